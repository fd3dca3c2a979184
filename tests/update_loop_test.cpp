// The update features of issue 9 seen through step() and the loop: accumulate(k) is one
// batch k times as large; reduce on plateau follows its rule validation by validation; a
// run resumed from a checkpoint with a schedule, a plateau reduction, a partly filled window
// or a learning rate changed live is the straight run, bit for bit; and change_options()
// inside iterate() takes effect at the next pass. Expected values come from arithmetic
// written here or from a run made another way, never from the library's own output.
#include <ATen/CPUGeneratorImpl.h>
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "same_bits.h"
#include "test_support.h"

namespace {

using downhill::testing::LogCapture;
using downhill::testing::message_of;
using ::testing::HasSubstr;

using downhill::testing::TemporaryFolder;

// Silences downhill for one test and puts the previous level back afterwards.
class Quiet : public ::testing::Test {
 private:
  downhill::testing::ScopedLogLevel quiet_{spdlog::level::off};
};

torch::TensorOptions f64() { return torch::TensorOptions().dtype(torch::kFloat64); }

// max |actual − expected| / max |expected|.
double relative_difference(const torch::Tensor& actual, const torch::Tensor& expected) {
  const double scale = expected.abs().max().item<double>();
  return (actual - expected).abs().max().item<double>() / scale;
}

using downhill::testing::same_bits;
using downhill::testing::same_tensors;

std::vector<torch::Tensor> state_of(downhill::Optimizer& opt) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, tensor] : opt.state()) out.push_back(tensor.detach().clone());
  return out;
}

// --- Linear regression in float64: w [4, 2], b [2], the mean squared error of a batch ---

struct Regression {
  torch::Tensor x, y;
  Regression(int64_t rows, uint64_t seed) {
    auto generator = at::detail::createCPUGenerator(seed);
    auto truth = torch::randn({4, 2}, generator, f64());
    x = torch::randn({rows, 4}, generator, f64());
    y = x.mm(truth) + 0.1 * torch::randn({rows, 2}, generator, f64());
  }
  // Rows [first, first + count) as a batch {x, y}.
  downhill::Batch rows(int64_t first, int64_t count) const {
    return {x.narrow(0, first, count), y.narrow(0, first, count)};
  }
};

struct Linear {
  torch::Tensor w, b;
  explicit Linear(double initial)
      : w(torch::full({4, 2}, initial, f64().requires_grad(true))),
        b(torch::full({2}, initial, f64().requires_grad(true))) {}
  std::vector<torch::Tensor> values() const { return {w.detach().clone(), b.detach().clone()}; }
  downhill::Params params() const { return {{"w", w}, {"b", b}}; }
};

torch::Tensor mse(const downhill::Batch& batch, const torch::Tensor& w, const torch::Tensor& b) {
  return (batch[0].mm(w) + b - batch[1]).square().mean();
}

// The gradient of mse by hand: with R = xw + b − y (n rows, m outputs),
// d/dw = 2/(n·m)·xᵀR and d/db = 2/(n·m)·Σ_rows R.
std::vector<torch::Tensor> mse_gradient(const downhill::Batch& batch, const torch::Tensor& w,
                                        const torch::Tensor& b) {
  torch::NoGradGuard no_grad;
  const auto r = batch[0].mm(w) + b - batch[1];
  const double scale = 2.0 / static_cast<double>(r.numel());
  return {scale * batch[0].t().mm(r), scale * r.sum(0)};
}

// One SGD step by hand on `values` ({w, b}).
void sgd_by_hand(std::vector<torch::Tensor>& values, const downhill::Batch& batch, double rate) {
  const auto g = mse_gradient(batch, values[0], values[1]);
  values = {values[0] - rate * g[0], values[1] - rate * g[1]};
}

void expect_close(const std::vector<torch::Tensor>& actual,
                  const std::vector<torch::Tensor>& expected, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_LE(relative_difference(actual[i], expected[i]), 1e-12) << what << ", tensor " << i;
  }
}

// ============ 1. accumulate(k) ============

constexpr int64_t kRows = 5;  // rows per small batch

struct AccumulateCase {
  std::string label;
  std::string algo;
  downhill::Options options;
};

void PrintTo(const AccumulateCase& c, std::ostream* out) { *out << c.label; }

class AccumulateMatchesALargerBatch : public Quiet,
                                      public ::testing::WithParamInterface<AccumulateCase> {};

TEST_P(AccumulateMatchesALargerBatch, FourBatchesAccumulatedAreOneStepOnTheirRowsTogether) {
  const AccumulateCase& c = GetParam();
  constexpr int64_t kWindows = 3;
  const Regression data(4 * kRows * kWindows, 11);
  Linear small(0.3), large(0.3);
  auto accumulating = downhill::build(
      c.algo,
      [&](const downhill::Batch& batch) -> downhill::Evaluation {
        return mse(batch, small.w, small.b);
      },
      small.params(), downhill::Options(c.options).accumulate(4));
  auto plain = downhill::build(
      c.algo,
      [&](const downhill::Batch& batch) -> downhill::Evaluation {
        return mse(batch, large.w, large.b);
      },
      large.params(), c.options);

  for (int64_t window = 0; window < kWindows; ++window) {
    SCOPED_TRACE("window " + std::to_string(window + 1));
    const auto before = small.values();
    std::vector<double> losses;
    for (int64_t k = 0; k < 4; ++k) {
      const int64_t index = 4 * window + k;
      const auto batch = data.rows(index * kRows, kRows);
      double own_loss = 0;
      {
        torch::NoGradGuard no_grad;
        own_loss = mse(batch, small.w, small.b).item<double>();
      }
      const auto monitors = accumulating->step(batch);
      // step() reports the batch's own loss, at the parameters the window started from.
      EXPECT_NEAR(monitors.at("loss"), own_loss, 1e-12 * own_loss) << "batch " << index;
      losses.push_back(monitors.at("loss"));
      // One update per four batches.
      EXPECT_EQ(accumulating->update_count(), (index + 1) / 4) << "after batch " << index;
      if (k < 3) {
        EXPECT_TRUE(same_tensors(small.values(), before)) << "changed inside the window";
      }
    }
    // The four batches are different data: each monitor is its own batch's.
    EXPECT_EQ(std::set<double>(losses.begin(), losses.end()).size(), 4u);

    plain->step(data.rows(4 * window * kRows, 4 * kRows));
    EXPECT_EQ(plain->update_count(), window + 1);
    EXPECT_FALSE(same_tensors(small.values(), before)) << "the window made no update";
    expect_close(small.values(), large.values(), "accumulated vs one large batch");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Algorithms, AccumulateMatchesALargerBatch,
    ::testing::Values(AccumulateCase{"sgd", "sgd", downhill::Options().learning_rate(0.05)},
                      AccumulateCase{
                          "sgd_nesterov", "sgd",
                          downhill::Options().learning_rate(0.05).momentum(0.5).nesterov(true)},
                      AccumulateCase{"adam", "adam", downhill::Options().learning_rate(0.05)},
                      AccumulateCase{"adam_momentum", "adam",
                                     downhill::Options().learning_rate(0.05).momentum(0.5)}),
    [](const auto& info) { return info.param.label; });

TEST_F(Quiet, AccumulatedUpdatesAreNumberedByUpdateNotByBatchInTheSchedule) {
  constexpr int64_t kWindows = 3;
  constexpr double kRate = 0.1;
  const Regression data(4 * kRows * kWindows, 12);
  Linear model(0.3);
  std::set<int64_t> asked;  // the t the schedule was asked for
  auto opt = downhill::build(
      "sgd",
      [&](const downhill::Batch& batch) -> downhill::Evaluation {
        return mse(batch, model.w, model.b);
      },
      model.params(),
      downhill::Options().learning_rate(kRate).accumulate(4).learning_rate_schedule([&](int64_t t) {
        asked.insert(t);
        return std::pow(0.5, static_cast<double>(t));
      }));
  // By hand: update j (0-based) is −rate·0.5^j times the gradient on the window's 4·B rows.
  auto expected = model.values();
  for (int64_t window = 0; window < kWindows; ++window) {
    for (int64_t k = 0; k < 4; ++k) opt->step(data.rows((4 * window + k) * kRows, kRows));
    sgd_by_hand(expected, data.rows(4 * window * kRows, 4 * kRows),
                kRate * std::pow(0.5, static_cast<double>(window)));
    expect_close(model.values(), expected, "after window " + std::to_string(window + 1));
  }
  EXPECT_EQ(opt->update_count(), kWindows);
  EXPECT_EQ(asked, (std::set<int64_t>{0, 1, 2}));
}

TEST(Accumulate, ANonFiniteLossInsideAWindowSkipsAndDropsThePartlyFilledWindow) {
  LogCapture log(spdlog::level::warn);
  constexpr double kRate = 0.1;
  constexpr int64_t kNanStep = 5;  // the 2nd batch of the 2nd window
  const Regression data(14 * kRows, 13);
  Linear model(0.3);
  int64_t step = 0;
  auto opt = downhill::build(
      "sgd",
      [&](const downhill::Batch& batch) -> downhill::Evaluation {
        auto loss = mse(batch, model.w, model.b);
        if (step++ == kNanStep) loss = loss * std::numeric_limits<double>::quiet_NaN();
        return loss;
      },
      model.params(), downhill::Options().learning_rate(kRate).accumulate(4));

  // By hand: batches 0-3 make update 1; batch 4 starts a window that the NaN of batch 5
  // drops; batches 6-9 make update 2 and 10-13 update 3.
  auto after_first = model.values();
  sgd_by_hand(after_first, data.rows(0, 4 * kRows), kRate);
  auto after_second = after_first;
  sgd_by_hand(after_second, data.rows(6 * kRows, 4 * kRows), kRate);
  auto after_third = after_second;
  sgd_by_hand(after_third, data.rows(10 * kRows, 4 * kRows), kRate);
  const std::vector<int64_t> updates = {0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3};

  for (int64_t b = 0; b < 14; ++b) {
    SCOPED_TRACE("batch " + std::to_string(b));
    const auto before = model.values();
    const auto monitors = opt->step(data.rows(b * kRows, kRows));
    EXPECT_EQ(opt->update_count(), updates[static_cast<size_t>(b)]);
    EXPECT_EQ(std::isnan(monitors.at("loss")), b == kNanStep);
    if (b == 3) expect_close(model.values(), after_first, "update 1");
    if (b == 9) expect_close(model.values(), after_second, "update 2 (batches 6-9)");
    if (b == 13) expect_close(model.values(), after_third, "update 3");
    if (b != 3 && b != 9 && b != 13) {
      EXPECT_TRUE(same_tensors(model.values(), before)) << "no update was due";
    }
  }
  EXPECT_EQ(log.warnings_with("non-finite loss"), 1) << log.text();
  EXPECT_EQ(log.warnings_with("skipped"), 1) << log.text();
}

TEST_F(Quiet, AccumulateIsRefusedWithEsgdAndBelowOneNamingTheSetting) {
  auto w = torch::ones({3}, torch::requires_grad());
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation { return (w * w).sum(); };
  const auto esgd = message_of<std::invalid_argument>([&] {
    auto opt = downhill::build("esgd", loss, {{"w", w}}, downhill::Options().accumulate(4));
  });
  EXPECT_THAT(esgd, HasSubstr("accumulate"));
  EXPECT_THAT(esgd, HasSubstr("ESGD"));
  EXPECT_NO_THROW(downhill::build("esgd", loss, {{"w", w}}, downhill::Options().accumulate(1)));
  for (const int64_t k : {0, -3}) {
    const auto below = message_of<std::invalid_argument>([&] {
      auto opt = downhill::build("sgd", loss, {{"w", w}}, downhill::Options().accumulate(k));
    });
    EXPECT_THAT(below, HasSubstr("accumulate = " + std::to_string(k)));
  }
}

TEST_F(Quiet, AccumulateCannotChangeLiveWhileAWindowIsPartlyFilled) {
  const Regression data(8 * kRows, 14);
  Linear model(0.3), twin(0.3);
  auto make = [&](Linear& m) {
    return downhill::build(
        "sgd",
        [&m](const downhill::Batch& batch) -> downhill::Evaluation { return mse(batch, m.w, m.b); },
        m.params(), downhill::Options().learning_rate(0.1).accumulate(3));
  };
  auto opt = make(model);
  auto reference = make(twin);
  for (int64_t b = 0; b < 2; ++b) {
    opt->step(data.rows(b * kRows, kRows));
    reference->step(data.rows(b * kRows, kRows));
  }
  const auto refused = message_of<std::invalid_argument>(
      [&] { opt->change_options([](downhill::Options& o) { o.accumulate(2); }); });
  EXPECT_THAT(refused, HasSubstr("accumulate"));
  EXPECT_EQ(opt->options().accumulate(), 3);
  // The window goes on as if nothing had been asked: the third batch makes the update.
  opt->step(data.rows(2 * kRows, kRows));
  reference->step(data.rows(2 * kRows, kRows));
  EXPECT_EQ(opt->update_count(), 1);
  EXPECT_TRUE(same_tensors(model.values(), twin.values()));
  // Between windows it may change: two batches now make an update.
  opt->change_options([](downhill::Options& o) { o.accumulate(2); });
  opt->step(data.rows(3 * kRows, kRows));
  EXPECT_EQ(opt->update_count(), 1);
  opt->step(data.rows(4 * kRows, kRows));
  EXPECT_EQ(opt->update_count(), 2);
}

// ============ 2. Reduce on plateau ============

// The rule of notes/api9.md written out: the 1-based validations after which the
// learning rate is reduced, given whether each validation improved.
std::vector<int64_t> simulate_plateau(const std::vector<bool>& improved, int64_t patience,
                                      int64_t cooldown) {
  std::vector<int64_t> out;
  int64_t waiting = 0;
  int64_t cooldown_left = 0;
  for (size_t v = 0; v < improved.size(); ++v) {
    waiting = improved[v] ? 0 : waiting + 1;
    if (cooldown_left > 0) {
      --cooldown_left;
      waiting = 0;
    }
    if (waiting >= patience) {
      waiting = 0;
      cooldown_left = cooldown;
      out.push_back(static_cast<int64_t>(v) + 1);
    }
  }
  return out;
}

// Whether each of the first `count` validations of `script` (the last value repeats)
// improves: the first always, later ones when below the best so far (min_improvement 0).
std::vector<bool> improvements(const std::vector<double>& script, size_t count) {
  std::vector<bool> out;
  double best = std::numeric_limits<double>::infinity();
  for (size_t v = 0; v < count; ++v) {
    const double value = script[std::min(v, script.size() - 1)];
    out.push_back(v == 0 || value < best);
    best = std::min(best, value);
  }
  return out;
}

// The learning rate after `validations` validations: the first rate halved (times
// `factor`) once per reduction at or before it, not below `floor`.
double rate_after(int64_t validations, const std::vector<int64_t>& reductions, double first,
                  double factor, double floor = 0) {
  double rate = first;
  for (const int64_t v : reductions) {
    if (v <= validations) rate = std::max(rate * factor, floor);
  }
  return rate;
}

// SGD on the loss w² (one float64 parameter, w = 1 at first), one step per pass:
// w ← w·(1 − 2·lr). Validation batches (a dataset of one tensor; training batches are
// empty) have a loss that does not depend on w: the next value of a script, whose last
// value repeats.
class PlateauProblem {
 public:
  static constexpr double kRate = 0.1;

  explicit PlateauProblem(std::vector<double> script = {7.0}) : script_(std::move(script)) {}

  std::unique_ptr<downhill::Optimizer> build(downhill::Options options,
                                             const std::string& algo = "sgd") {
    auto loss = [this](const downhill::Batch& batch) -> downhill::Evaluation {
      if (batch.empty()) return (w * w).sum();
      const size_t k = std::min(validations++, script_.size() - 1);
      return torch::tensor(script_[k], f64());
    };
    return downhill::build(algo, loss, {{"w", w}}, options.learning_rate(kRate).validate_every(1));
  }

  torch::Tensor w = torch::ones({1}, f64().requires_grad(true));
  downhill::Dataset train{downhill::Batch{}};
  downhill::Dataset valid{downhill::Batch{torch::zeros({1})},
                          downhill::DatasetOptions().batch_size(1).name("valid")};
  size_t validations = 0;

 private:
  std::vector<double> script_;
};

struct PlateauRun {
  std::vector<double> rates;  // options().learning_rate() after each pass
  std::vector<double> w;      // w after each pass
  double final_rate = 0;
  double final_w = 0;
};

PlateauRun run_plateau(PlateauProblem& problem, downhill::Optimizer& opt) {
  PlateauRun run;
  for (const auto& item : opt.iterate(problem.train, &problem.valid)) {
    (void)item;
    run.rates.push_back(opt.options().learning_rate());
    run.w.push_back(problem.w.item<double>());
  }
  run.final_rate = opt.options().learning_rate();
  run.final_w = problem.w.item<double>();
  return run;
}

// The rates of `run`, pass by pass, and w = Π(1 − 2·rate) with them: the reduced rate is
// the one the pass after the reducing validation trains with.
void expect_rates(const PlateauRun& run, const std::vector<int64_t>& reductions, double floor = 0) {
  double w = 1.0;
  for (size_t p = 0; p < run.rates.size(); ++p) {
    // Validation p + 1 comes before pass p + 1.
    const double rate =
        rate_after(static_cast<int64_t>(p) + 1, reductions, PlateauProblem::kRate, 0.5, floor);
    EXPECT_DOUBLE_EQ(run.rates[p], rate) << "pass " << p + 1;
    w *= 1 - 2 * rate;
    EXPECT_DOUBLE_EQ(run.w[p], w) << "pass " << p + 1;
  }
}

TEST(Plateau, LearningRateHalvesAtValidationsThreeFiveSevenWhenValidationNeverImproves) {
  LogCapture log(spdlog::level::info);
  PlateauProblem problem;
  auto opt = problem.build(
      downhill::Options().plateau_patience(2).plateau_factor(0.5).patience(100).max_updates(10));
  const PlateauRun run = run_plateau(problem, *opt);
  ASSERT_EQ(run.rates.size(), 10u);
  // Passes 1-10 follow validations 1-10; max_updates adds a closing validation, 11.
  const std::vector<int64_t> reductions = {3, 5, 7, 9, 11};
  EXPECT_EQ(simulate_plateau(improvements({7.0}, 11), 2, 0), reductions);
  expect_rates(run, reductions);
  // The closing validation counts too, and the best (validation 1's w = 1) is restored.
  EXPECT_DOUBLE_EQ(run.final_rate, 0.1 / 32);
  EXPECT_EQ(run.final_w, 1.0);
  EXPECT_EQ(problem.validations, 11u);
  double rate = PlateauProblem::kRate;
  for (const int64_t v : reductions) {
    rate *= 0.5;
    EXPECT_THAT(log.text(), HasSubstr("info validation " + std::to_string(v) +
                                      ": no improvement in 2 validations; learning rate reduced "
                                      "to " +
                                      fmt::format("{}", rate)));
  }
  size_t lines = 0;
  for (size_t at = log.text().find("learning rate reduced"); at != std::string::npos;
       at = log.text().find("learning rate reduced", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, reductions.size());
}

TEST_F(Quiet, PlateauReductionsThroughMinimize) {
  PlateauProblem problem;
  auto opt = problem.build(
      downhill::Options().plateau_patience(2).plateau_factor(0.5).patience(100).max_updates(6));
  opt->minimize(problem.train, &problem.valid);
  // Validations 1-6 before the passes and the closing 7th: reductions at 3, 5 and 7.
  EXPECT_DOUBLE_EQ(opt->options().learning_rate(), 0.1 / 8);
  EXPECT_EQ(problem.validations, 7u);
}

struct PlateauCase {
  std::string label;
  std::vector<double> script;
  int64_t patience;
  int64_t cooldown;
  std::vector<int64_t> reductions;  // worked out by hand from the rule, 11 validations
};

void PrintTo(const PlateauCase& c, std::ostream* out) { *out << c.label; }

class PlateauRule : public Quiet, public ::testing::WithParamInterface<PlateauCase> {};

TEST_P(PlateauRule, ReductionsComeWhereTheRuleSays) {
  const PlateauCase& c = GetParam();
  // The hand-worked list agrees with the rule written out.
  ASSERT_EQ(simulate_plateau(improvements(c.script, 11), c.patience, c.cooldown), c.reductions);
  PlateauProblem problem(c.script);
  auto opt = problem.build(downhill::Options()
                               .plateau_patience(c.patience)
                               .plateau_cooldown(c.cooldown)
                               .plateau_factor(0.5)
                               .patience(100)
                               .max_updates(10));
  const PlateauRun run = run_plateau(problem, *opt);
  ASSERT_EQ(run.rates.size(), 10u);
  expect_rates(run, c.reductions);
  EXPECT_DOUBLE_EQ(run.final_rate, rate_after(11, c.reductions, PlateauProblem::kRate, 0.5));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PlateauRule,
    ::testing::Values(
        // Constant: waiting 1, 2 (reduce at 3), cooldown eats 4, 1, 2 (reduce at 6), ...
        PlateauCase{"constant_cooldown_1", {7.0}, 2, 1, {3, 6, 9}},
        // Improvements at 1, 3, 7: waiting 1 (v2), 0, 1, 2 (reduce at 5), cooldown eats 6,
        // 0 (v7 improves), 1, 2 (reduce at 9), cooldown eats 10, 1 (v11).
        PlateauCase{"improving_cooldown_1", {5, 5, 4, 4, 4, 4, 3}, 2, 1, {5, 9}},
        // Patience 3, cooldown 2: reduce at 4; cooldown eats 5, 6; 1, 2, 3 (reduce at 9);
        // cooldown eats 10, 11.
        PlateauCase{"constant_patience_3_cooldown_2", {7.0}, 3, 2, {4, 9}},
        // An improvement at validation 4 resets the wait: 1, 2 (reduce at 3), 0 (v4
        // improves), 1, 2 (reduce at 6), 1, 2 (reduce at 8), 1, 2 (reduce at 10), 1.
        PlateauCase{"improvement_resets", {5, 5, 5, 4}, 2, 0, {3, 6, 8, 10}}),
    [](const auto& info) { return info.param.label; });

TEST(Plateau, TheFloorIsRespectedAndLogged) {
  LogCapture log(spdlog::level::info);
  PlateauProblem problem;
  auto opt = problem.build(downhill::Options()
                               .plateau_patience(2)
                               .plateau_factor(0.5)
                               .plateau_min_learning_rate(0.03)
                               .patience(100)
                               .max_updates(10));
  const PlateauRun run = run_plateau(problem, *opt);
  ASSERT_EQ(run.rates.size(), 10u);
  // 0.1, then 0.05 at validation 3, max(0.025, 0.03) = 0.03 at 5, and 0.03 from then on.
  expect_rates(run, {3, 5, 7, 9}, 0.03);
  EXPECT_EQ(run.rates[4], 0.03);
  EXPECT_EQ(run.final_rate, 0.03);
  for (const double rate : run.rates) EXPECT_GE(rate, 0.03);
  EXPECT_THAT(log.text(), HasSubstr("validation 3: no improvement in 2 validations; learning "
                                    "rate reduced to 0.05"));
  EXPECT_THAT(log.text(), HasSubstr("validation 5: no improvement in 2 validations; learning "
                                    "rate reduced to 0.03"));
}

TEST_F(Quiet, PlateauSettingsOutOfRangeAreRefusedByName) {
  struct Bad {
    downhill::Options options;
    std::string named;
  };
  const std::vector<Bad> bad = {
      {downhill::Options().plateau_patience(2).plateau_factor(1), "plateau_factor = 1"},
      {downhill::Options().plateau_patience(2).plateau_factor(0), "plateau_factor = 0"},
      {downhill::Options().plateau_patience(-1), "plateau_patience = -1"},
      {downhill::Options().plateau_patience(2).plateau_cooldown(-1), "plateau_cooldown = -1"},
  };
  for (const auto& [options, named] : bad) {
    SCOPED_TRACE(named);
    PlateauProblem problem;
    EXPECT_THAT(message_of<std::invalid_argument>([&] { auto opt = problem.build(options); }),
                HasSubstr(named));
  }
  PlateauProblem problem;
  const auto adadelta = message_of<std::invalid_argument>(
      [&] { auto opt = problem.build(downhill::Options().plateau_patience(2), "adadelta"); });
  EXPECT_THAT(adadelta, HasSubstr("plateau_patience"));
  EXPECT_THAT(adadelta, HasSubstr("ADADELTA"));
  EXPECT_NO_THROW(problem.build(downhill::Options(), "adadelta"));
}

// Groups: w (group 0, 0.1), u (group 1, 0.4), v (group 2, 0.01, already below the floor
// 0.03) and a frozen f. Validations 3, 5 and the closing 7th reduce: w's rate goes 0.1,
// 0.05, max(0.025, 0.03) = 0.03; u's 0.4, 0.2, 0.1, 0.05; v's is never raised to the floor;
// the frozen group's settings and f stay as they are.
TEST_F(Quiet, PlateauReducesEveryNonFrozenGroupAndRaisesNone) {
  auto w = torch::ones({1}, f64().requires_grad(true));
  auto u = torch::ones({1}, f64().requires_grad(true));
  auto v = torch::ones({1}, f64().requires_grad(true));
  auto f = torch::ones({1}, f64());
  downhill::Params params{{"w", w}};
  params.group({{"u", u}}, [](downhill::Options& o) { o.learning_rate(0.4); })
      .group({{"v", v}}, [](downhill::Options& o) { o.learning_rate(0.01); })
      .frozen({{"f", f}});
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    if (batch.empty()) return (w * w + u * u + v * v + f).sum();
    return torch::tensor(7.0, f64());
  };
  auto opt = downhill::build("sgd", loss, params,
                             downhill::Options()
                                 .learning_rate(0.1)
                                 .validate_every(1)
                                 .patience(100)
                                 .max_updates(6)
                                 .plateau_patience(2)
                                 .plateau_factor(0.5)
                                 .plateau_min_learning_rate(0.03));
  downhill::Dataset train{downhill::Batch{}};
  downhill::Dataset valid{downhill::Batch{torch::zeros({1})},
                          downhill::DatasetOptions().batch_size(1)};
  const std::vector<int64_t> reductions = {3, 5, 7};
  double w_expected = 1, u_expected = 1, v_expected = 1;
  int64_t pass = 0;
  for (const auto& item : opt->iterate(train, &valid)) {
    (void)item;
    ++pass;
    const double w_rate = rate_after(pass, reductions, 0.1, 0.5, 0.03);
    const double u_rate = rate_after(pass, reductions, 0.4, 0.5, 0.03);
    EXPECT_DOUBLE_EQ(opt->group_options(0).learning_rate(), w_rate) << "pass " << pass;
    EXPECT_DOUBLE_EQ(opt->group_options(1).learning_rate(), u_rate) << "pass " << pass;
    EXPECT_EQ(opt->group_options(2).learning_rate(), 0.01) << "pass " << pass;
    w_expected *= 1 - 2 * w_rate;
    u_expected *= 1 - 2 * u_rate;
    v_expected *= 1 - 2 * 0.01;
    EXPECT_DOUBLE_EQ(w.item<double>(), w_expected) << "pass " << pass;
    EXPECT_DOUBLE_EQ(u.item<double>(), u_expected) << "pass " << pass;
    EXPECT_DOUBLE_EQ(v.item<double>(), v_expected) << "pass " << pass;
  }
  EXPECT_EQ(pass, 6);
  EXPECT_EQ(opt->group_options(0).learning_rate(), 0.03);
  EXPECT_DOUBLE_EQ(opt->group_options(1).learning_rate(), 0.05);
  EXPECT_EQ(opt->group_options(2).learning_rate(), 0.01);
  EXPECT_EQ(opt->group_options(3).learning_rate(), 0.1);
  EXPECT_EQ(f.item<double>(), 1.0);
}

// patience(3) and plateau_patience(1) with a validation that never improves after the
// first: each of validations 2, 3, 4 halves the rate before passes 2, 3, 4; validation 5
// halves it again and then ends the run (5 − 1 > 3 validations since the best), so the
// reductions did not put the early stop off. The best, validation 1's w = 1, is restored.
TEST(Plateau, ReductionsDoNotResetPatience) {
  LogCapture log(spdlog::level::info);
  PlateauProblem problem;
  auto opt = problem.build(downhill::Options().plateau_patience(1).plateau_factor(0.5).patience(3));
  const PlateauRun run = run_plateau(problem, *opt);
  ASSERT_EQ(run.rates.size(), 4u);
  expect_rates(run, {2, 3, 4, 5});
  EXPECT_EQ(run.rates, (std::vector<double>{0.1, 0.05, 0.025, 0.0125}));
  EXPECT_EQ(run.final_rate, 0.00625);
  EXPECT_EQ(run.final_w, 1.0);
  EXPECT_EQ(problem.validations, 5u);
  EXPECT_THAT(log.text(), HasSubstr("validation 5: no improvement in 1 validations; learning rate "
                                    "reduced to 0.00625"));
  EXPECT_THAT(log.text(), HasSubstr("patience elapsed!"));
  // The same run without reduce on plateau stops at the same validation.
  PlateauProblem without;
  auto plain = without.build(downhill::Options().patience(3));
  EXPECT_EQ(run_plateau(without, *plain).rates.size(), 4u);
}

// ============ 3. Bit-identical resume ============

// Regression with a short last batch (36 rows in slices of 8: 5 batches a pass, the last
// of 4), validated on 20 rows, 2 of their 3 slices per validation; float32.
struct ResumeData {
  torch::Tensor x_train, y_train, x_valid, y_valid;
  ResumeData() {
    auto generator = at::detail::createCPUGenerator(2024);
    auto truth = torch::randn({5, 3}, generator);
    x_train = torch::randn({36, 5}, generator);
    y_train = x_train.mm(truth) + 0.1 * torch::randn({36, 3}, generator);
    x_valid = torch::randn({20, 5}, generator);
    y_valid = x_valid.mm(truth) + 0.1 * torch::randn({20, 3}, generator);
  }
};

struct Trace {
  std::vector<downhill::Monitors> training, validation;
  std::vector<std::vector<torch::Tensor>> params, state;
  std::vector<int64_t> updates;
  std::vector<double> rates;
  std::vector<torch::Tensor> final_params, final_state;
  int64_t final_updates = -1;
  double final_rate = 0;
};

struct ResumeConfig {
  std::string algo = "adam";
  downhill::Options options;         // max_updates, checkpoint and resume are added per run
  int64_t train_iteration_size = 0;  // 0: every slice
  // Called after each pass with its number, counted from the start of the straight run.
  std::function<void(downhill::Optimizer&, int64_t)> after_pass;
};

// One run on fresh parameters (all `initial`) and fresh datasets made after
// torch::manual_seed(seed). `first_pass`: the passes before this run (a resumed run's).
Trace run_loop(const ResumeData& data, const ResumeConfig& config, downhill::Options options,
               double initial, uint64_t seed, int64_t first_pass = 0) {
  torch::manual_seed(seed);
  auto w = torch::full({5, 3}, initial, torch::requires_grad());
  auto b = torch::full({3}, initial, torch::requires_grad());
  auto train_options = downhill::DatasetOptions().batch_size(8).name("train");
  if (config.train_iteration_size > 0) train_options.iteration_size(config.train_iteration_size);
  downhill::Dataset train({data.x_train, data.y_train}, train_options);
  downhill::Dataset valid({data.x_valid, data.y_valid},
                          downhill::DatasetOptions().batch_size(8).iteration_size(2).name("valid"));
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    auto err = batch[0].mm(w) + b - batch[1];
    return {err.square().mean() + 1e-3 * w.square().sum(), {{"abs_err", err.abs().mean()}}};
  };
  auto opt = downhill::build(config.algo, loss, {{"w", w}, {"b", b}}, options);
  Trace trace;
  int64_t pass = first_pass;
  for (const auto& [training, validation] : opt->iterate(train, &valid)) {
    ++pass;
    if (config.after_pass) config.after_pass(*opt, pass);
    trace.training.push_back(training);
    trace.validation.push_back(validation);
    trace.params.push_back({w.detach().clone(), b.detach().clone()});
    trace.state.push_back(state_of(*opt));
    trace.updates.push_back(opt->update_count());
    trace.rates.push_back(opt->options().learning_rate());
  }
  trace.final_params = {w.detach().clone(), b.detach().clone()};
  trace.final_state = state_of(*opt);
  trace.final_updates = opt->update_count();
  trace.final_rate = opt->options().learning_rate();
  return trace;
}

// `resumed` is `straight` from its pass `from` + 1 on, bit for bit; reports the first pass
// that differs and in what.
void expect_continues(const Trace& straight, const Trace& resumed, size_t from) {
  ASSERT_EQ(resumed.training.size() + from, straight.training.size()) << "passes";
  for (size_t k = from; k < straight.training.size(); ++k) {
    const size_t r = k - from;
    std::string differs;
    if (!same_bits(straight.training[k], resumed.training[r])) {
      differs += " training monitors (" + straight.training[k].to_string() + " straight, " +
                 resumed.training[r].to_string() + " resumed);";
    }
    if (!same_bits(straight.validation[k], resumed.validation[r])) {
      differs += " validation monitors (" + straight.validation[k].to_string() + " straight, " +
                 resumed.validation[r].to_string() + " resumed);";
    }
    if (!same_tensors(straight.params[k], resumed.params[r])) differs += " parameters;";
    if (!same_tensors(straight.state[k], resumed.state[r])) differs += " state();";
    if (straight.updates[k] != resumed.updates[r]) {
      differs += " update_count (" + std::to_string(straight.updates[k]) + " straight, " +
                 std::to_string(resumed.updates[r]) + " resumed);";
    }
    if (!same_bits(straight.rates[k], resumed.rates[r])) {
      differs += " learning rate (" + std::to_string(straight.rates[k]) + " straight, " +
                 std::to_string(resumed.rates[r]) + " resumed);";
    }
    EXPECT_TRUE(differs.empty()) << "pass " << k + 1 << " differs in:" << differs;
    if (!differs.empty()) break;
  }
  EXPECT_TRUE(same_tensors(straight.final_params, resumed.final_params)) << "parameters at the end";
  EXPECT_TRUE(same_tensors(straight.final_state, resumed.final_state)) << "state at the end";
  EXPECT_EQ(straight.final_updates, resumed.final_updates) << "update_count at the end";
  EXPECT_TRUE(same_bits(straight.final_rate, resumed.final_rate)) << "learning rate at the end";
}

downhill::Options with_updates(const ResumeConfig& config, int64_t max_updates) {
  return downhill::Options(config.options).max_updates(max_updates);
}

class Resume : public Quiet {
 protected:
  // The straight run of `passes`, then for each of `checkpoint_after`: a first run of that
  // many passes writing checkpoints, and a fresh optimizer (other initial values, another
  // seed) resumed from the file to `passes`, which must continue the straight run.
  Trace straight_and_resumed(const ResumeConfig& config, int64_t passes,
                             const std::vector<int64_t>& checkpoint_after) {
    const Trace straight = run_loop(data, config, with_updates(config, passes), 0.1, 42);
    EXPECT_EQ(straight.training.size(), static_cast<size_t>(passes));
    for (const int64_t first_passes : checkpoint_after) {
      SCOPED_TRACE("checkpoint after pass " + std::to_string(first_passes));
      const auto path = folder.file("run_" + std::to_string(first_passes) + ".ckpt");
      const Trace first =
          run_loop(data, config, with_updates(config, first_passes).checkpoint(path), 0.1, 42);
      EXPECT_EQ(first.training.size(), static_cast<size_t>(first_passes));
      const Trace resumed =
          run_loop(data, config, with_updates(config, passes).checkpoint(path).resume(true), -0.7,
                   7, first_passes);
      expect_continues(straight, resumed, static_cast<size_t>(first_passes));
    }
    return straight;
  }

  const ResumeData data;
  TemporaryFolder folder{"update_loop_resume"};
};

downhill::Options resume_options() {
  return downhill::Options()
      .learning_rate(0.05)
      .momentum(0.5)
      .validate_every(2)
      .patience(100)
      .monitor_gradients(true);
}

TEST_F(Resume, ACosineScheduleContinuesFromTheMiddle) {
  // 5 updates a pass; the schedule falls over 30 updates; checkpoints after 15 and 20.
  ResumeConfig config;
  config.options = resume_options().learning_rate_schedule(downhill::schedules::cosine(30, 0.1));
  const Trace straight = straight_and_resumed(config, 8, {3, 4});
  EXPECT_EQ(straight.updates[2], 15);
  // The schedule is at work: the same run without it ends elsewhere.
  ResumeConfig unscheduled;
  unscheduled.options = resume_options();
  const Trace plain = run_loop(data, unscheduled, with_updates(unscheduled, 8), 0.1, 42);
  EXPECT_FALSE(same_tensors(plain.params.back(), straight.params.back()));
}

TEST_F(Resume, PlateauReductionsBeforeAndPendingAtTheCheckpointContinue) {
  // min_improvement so large that no validation after the first improves: with
  // plateau_patience(2) and plateau_cooldown(1), reductions at validations 3, 6, 9 (and at
  // the closing 12th, which 10 passes do not reach: 11 validations). After pass 3 the
  // reduction of validation 3 is done and its cooldown is pending; after pass 5 one
  // validation (the 5th) is waiting.
  ResumeConfig config;
  config.options = resume_options()
                       .validate_every(1)
                       .min_improvement(1e9)
                       .plateau_patience(2)
                       .plateau_cooldown(1)
                       .plateau_factor(0.5);
  const std::vector<int64_t> reductions = {3, 6, 9};
  ASSERT_EQ(simulate_plateau(improvements({1.0}, 11), 2, 1), reductions);
  const Trace straight = straight_and_resumed(config, 10, {3, 5});
  for (size_t p = 0; p < straight.rates.size(); ++p) {
    EXPECT_DOUBLE_EQ(straight.rates[p],
                     rate_after(static_cast<int64_t>(p) + 1, reductions, 0.05, 0.5))
        << "pass " << p + 1;
  }
}

TEST_F(Resume, APartlyFilledAccumulationWindowContinues) {
  // 4 batches a pass and accumulate(3): updates after pass p = ⌊4p/3⌋; the checkpoint
  // after pass 1 holds 1 batch of a window, after pass 2 holds 2.
  ResumeConfig config;
  config.options = resume_options().accumulate(3);
  config.train_iteration_size = 4;
  const Trace straight = straight_and_resumed(config, 6, {1, 2});
  for (size_t p = 0; p < straight.updates.size(); ++p) {
    EXPECT_EQ(straight.updates[p], 4 * static_cast<int64_t>(p + 1) / 3) << "pass " << p + 1;
    EXPECT_FALSE(straight.training[p].contains("skipped"));
  }
}

TEST_F(Resume, ALearningRateChangedLiveBeforeTheCheckpointIsRestored) {
  // After pass 2 the rate becomes a tenth; the resumed optimizer is built with the
  // original 0.05 and must continue with the changed one.
  constexpr double kChanged = 0.005;
  ResumeConfig config;
  config.options = resume_options();
  config.after_pass = [](downhill::Optimizer& opt, int64_t pass) {
    if (pass == 2) opt.change_options([](downhill::Options& o) { o.learning_rate(kChanged); });
  };
  const Trace straight = run_loop(data, config, with_updates(config, 8), 0.1, 42);
  ASSERT_EQ(straight.rates.size(), 8u);
  EXPECT_EQ(straight.rates[0], 0.05);
  EXPECT_EQ(straight.rates[1], kChanged);
  EXPECT_EQ(straight.rates[7], kChanged);

  const auto path = folder.file("changed.ckpt");
  run_loop(data, config, with_updates(config, 4).checkpoint(path), 0.1, 42);
  Trace resumed;
  {
    LogCapture log(spdlog::level::info);
    resumed =
        run_loop(data, config, with_updates(config, 8).checkpoint(path).resume(true), -0.7, 7, 4);
    EXPECT_THAT(log.text(), HasSubstr("learning_rate = 0.005 from the checkpoint (was 0.05)"));
  }
  expect_continues(straight, resumed, 4);
  // Built the same way but never changed, a run differs: the change is what the file carried.
  ResumeConfig unchanged;
  unchanged.options = resume_options();
  const Trace plain = run_loop(data, unchanged, with_updates(unchanged, 8), 0.1, 42);
  EXPECT_FALSE(same_tensors(plain.params.back(), straight.params.back()));
}

// ============ 4. A mid-window checkpoint and another accumulate ============

TEST_F(Quiet, AMidWindowCheckpointIsRefusedByAnOptimizerWithAnotherAccumulate) {
  TemporaryFolder folder("update_loop_window");
  const auto mid_window = folder.file("mid_window.ckpt");
  const auto between = folder.file("between_windows.ckpt");
  const Regression data(12 * kRows, 15);
  auto batch = [&](int64_t k) { return data.rows(k * kRows, kRows); };
  auto make = [](Linear& m, int64_t accumulate, double rate) {
    return downhill::build(
        "sgd", [&m](const downhill::Batch& b) -> downhill::Evaluation { return mse(b, m.w, m.b); },
        m.params(), downhill::Options().learning_rate(rate).momentum(0.5).accumulate(accumulate));
  };
  // The writer: accumulate(3), batches 0-2 make an update, then 3 and 4 are summed.
  Linear writer_model(0.3);
  auto writer = make(writer_model, 3, 0.1);
  for (int64_t k = 0; k < 3; ++k) writer->step(batch(k));
  writer->save_checkpoint(between);
  for (int64_t k = 3; k < 5; ++k) writer->step(batch(k));
  writer->save_checkpoint(mid_window);

  for (const int64_t other : {1, 2, 4}) {
    SCOPED_TRACE("accumulate(" + std::to_string(other) + ")");
    Linear model(-0.2), twin_model(-0.2);
    auto target = make(model, other, 0.07);
    auto twin = make(twin_model, other, 0.07);  // never asked to load
    target->step(batch(6));
    twin->step(batch(6));
    const auto values = model.values();
    const auto state = state_of(*target);
    const int64_t updates = target->update_count();
    const auto message =
        message_of<std::invalid_argument>([&] { target->load_checkpoint(mid_window); });
    EXPECT_THAT(message, HasSubstr("accumulate"));
    EXPECT_TRUE(same_tensors(model.values(), values)) << "parameters";
    EXPECT_TRUE(same_tensors(state_of(*target), state)) << "state";
    EXPECT_EQ(target->update_count(), updates);
    EXPECT_EQ(target->options().learning_rate(), 0.07);
    EXPECT_EQ(target->options().accumulate(), other);
    // Its own window is as it was: the next batches make the twin's updates.
    for (int64_t k = 7; k < 7 + other; ++k) {
      target->step(batch(k));
      twin->step(batch(k));
    }
    EXPECT_EQ(target->update_count(), twin->update_count());
    EXPECT_TRUE(same_tensors(model.values(), twin_model.values()));
    EXPECT_TRUE(same_tensors(state_of(*target), state_of(*twin)));
  }

  // With the same accumulate the window loads and is finished by the next batch, as the
  // writer's is.
  Linear reader_model(-0.2);
  auto reader = make(reader_model, 3, 0.07);
  reader->load_checkpoint(mid_window);
  EXPECT_EQ(reader->options().learning_rate(), 0.1);
  reader->step(batch(5));
  writer->step(batch(5));
  EXPECT_EQ(reader->update_count(), 2);
  EXPECT_TRUE(same_tensors(reader_model.values(), writer_model.values()));
  // A checkpoint between windows holds no window: another accumulate may load it.
  Linear between_model(-0.2);
  auto between_reader = make(between_model, 2, 0.07);
  EXPECT_NO_THROW(between_reader->load_checkpoint(between));
  EXPECT_EQ(between_reader->update_count(), 1);
}

// ============ 5. change_options inside iterate() ============

TEST_F(Quiet, ALearningRateChangedInsideIterateIsUsedFromTheNextPass) {
  // 4 slices of 5 rows, not shuffled: each pass is batches 0, 1, 2, 3 in order.
  constexpr int64_t kBatches = 4;
  constexpr double kRate = 0.1;
  const Regression data(kBatches * kRows, 16);
  Linear model(0.3);
  downhill::Dataset train({data.x, data.y},
                          downhill::DatasetOptions().batch_size(kRows).shuffle(false));
  downhill::Dataset valid({data.x, data.y},
                          downhill::DatasetOptions().batch_size(kRows).shuffle(false));
  auto opt = downhill::build(
      "sgd",
      [&](const downhill::Batch& batch) -> downhill::Evaluation {
        return mse(batch, model.w, model.b);
      },
      model.params(),
      downhill::Options().learning_rate(kRate).validate_every(100).patience(100).max_updates(6));
  const double changed = kRate / 10;
  auto expected = model.values();
  auto ignored = model.values();  // the change not taken: the old rate throughout
  int64_t pass = 0;
  for (const auto& item : opt->iterate(train, &valid)) {
    (void)item;
    ++pass;
    // By hand: four SGD steps, at the rate before the change for passes 1-3.
    const double rate = pass <= 3 ? kRate : changed;
    for (int64_t k = 0; k < kBatches; ++k) {
      sgd_by_hand(expected, data.rows(k * kRows, kRows), rate);
      sgd_by_hand(ignored, data.rows(k * kRows, kRows), kRate);
    }
    expect_close(model.values(), expected, "after pass " + std::to_string(pass));
    if (pass > 3) {
      EXPECT_GT(relative_difference(model.w.detach(), ignored[0]), 1e-6);
    }
    if (pass == 3) {
      opt->change_options([&](downhill::Options& o) { o.learning_rate(o.learning_rate() / 10); });
      EXPECT_EQ(opt->options().learning_rate(), changed);
    }
  }
  EXPECT_EQ(pass, 6);
}

}  // namespace
