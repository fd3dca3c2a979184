// The loop (docs/guide.md, "The loop"): validation schedule, patience, min_improvement,
// max_updates, keeping and restoring the best parameters, monitors, and
// downhill::minimize over every kind of data source.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "test_support.h"

namespace {

// Silences downhill's logger while the tests run and puts the previous level back after.
class QuietLogs : public ::testing::Environment {
 public:
  void SetUp() override { quiet_.emplace(spdlog::level::off); }
  void TearDown() override { quiet_.reset(); }

 private:
  std::optional<downhill::testing::ScopedLogLevel> quiet_;
};
[[maybe_unused]] const auto* const kQuietLogs = ::testing::AddGlobalTestEnvironment(new QuietLogs);

// A loss whose validation value follows a script, for testing the loop's decisions.
//
// Training steps see the loss x (one scalar parameter, starting at 0), so SGD
// with learning rate 1 lowers x by exactly 1 per step and x = −(steps taken).
// Validation runs without gradients (evaluate() holds a NoGradGuard); there
// the loss is the next value of the script (the last one repeats) and the
// number of training steps taken so far is recorded. The training data is one
// empty batch per pass, so passes, steps and −x all count the same thing.
class ScriptedLoss {
 public:
  explicit ScriptedLoss(std::vector<double> script)
      : x(torch::zeros({1}, torch::dtype(torch::kFloat64).requires_grad(true))),
        script_(std::move(script)) {}

  downhill::Loss loss() {
    return [this](const downhill::Batch&) -> downhill::Evaluation {
      if (torch::GradMode::is_enabled()) {
        ++steps;
        return x.sum();
      }
      const size_t k = std::min(steps_at_validation.size(), script_.size() - 1);
      steps_at_validation.push_back(steps);
      return x.sum() * 0 + script_[k];
    };
  }

  std::unique_ptr<downhill::Optimizer> build(downhill::Options options) {
    return downhill::build("sgd", loss(), {{"x", x}}, options.learning_rate(1.0));
  }

  double value() const { return x.item<double>(); }

  torch::Tensor x;
  int64_t steps = 0;
  std::vector<int64_t> steps_at_validation;

 private:
  std::vector<double> script_;
};

// Scripts: strictly falling (every validation improves), and one that improves
// for the first `improving` validations and never again.
std::vector<double> falling(int n) {
  std::vector<double> out;
  for (int k = 0; k < n; ++k) out.push_back(100.0 - k);
  return out;
}

std::vector<double> best_at(int improving) {
  std::vector<double> out = falling(improving);
  out.push_back(1000.0);  // every later validation is worse than the best
  return out;
}

// Validation happens at pass 0, validate_every, 2·validate_every, ...
class ValidationSchedule : public ::testing::TestWithParam<int> {};

TEST_P(ValidationSchedule, ValidatesAtMultiplesOfValidateEvery) {
  const int every = GetParam();
  const int max_updates = 10;
  const auto script = falling(20);
  ScriptedLoss scripted(script);
  auto opt = scripted.build(
      downhill::Options().validate_every(every).patience(100).max_updates(max_updates));
  downhill::Dataset train{downhill::Batch{}};

  std::vector<int64_t> expected_steps;
  for (int pass = 0; pass < max_updates; pass += every) expected_steps.push_back(pass);
  // Validations run before a pass, so the final parameters are validated once more when
  // max_updates ends the run.
  expected_steps.push_back(max_updates);

  int items = 0;
  for (const auto& [training, validation] : opt->iterate(train)) {
    // Item k follows pass k+1; its validation is the last one, made at pass
    // every·floor(k/every), which is validation number floor(k/every).
    EXPECT_DOUBLE_EQ(validation.at("loss"), script[static_cast<size_t>(items / every)])
        << "item " << items;
    // The training loss is x before the pass's only step: −items.
    EXPECT_DOUBLE_EQ(training.at("loss"), -items);
    ++items;
  }
  EXPECT_EQ(items, max_updates);
  EXPECT_EQ(scripted.steps, max_updates);
  EXPECT_EQ(scripted.steps_at_validation, expected_steps);
}

INSTANTIATE_TEST_SUITE_P(Loop, ValidationSchedule, ::testing::Values(1, 3, 4, 10));

// Stopping happens exactly when validations − best_validation > patience.
struct PatienceCase {
  int improving;  // validations 1..improving improve, the later ones do not
  int patience;
  int every;
};

class Patience : public ::testing::TestWithParam<PatienceCase> {};

TEST_P(Patience, StopsExactlyWhenValidationsSinceTheBestExceedPatience) {
  const auto [improving, patience, every] = GetParam();
  ScriptedLoss scripted(best_at(improving));
  auto opt = scripted.build(
      downhill::Options().validate_every(every).patience(patience).max_updates(10000));
  downhill::Dataset train{downhill::Batch{}};

  int items = 0;
  for (const auto& item : opt->iterate(train)) {
    (void)item;
    ++items;
  }
  // The best is validation `improving`; the loop stops at validation
  // improving + patience + 1, before training after it.
  const int validations = improving + patience + 1;
  const int passes = (validations - 1) * every;
  EXPECT_EQ(static_cast<int>(scripted.steps_at_validation.size()), validations);
  EXPECT_EQ(scripted.steps_at_validation.back(), passes);
  EXPECT_EQ(items, passes);
  EXPECT_EQ(scripted.steps, passes);
  // The loop ended by itself: x is back where it was at the best validation.
  EXPECT_DOUBLE_EQ(scripted.value(), -static_cast<double>((improving - 1) * every));
}

INSTANTIATE_TEST_SUITE_P(Loop, Patience,
                         ::testing::Values(PatienceCase{1, 0, 1}, PatienceCase{1, 1, 1},
                                           PatienceCase{1, 3, 1}, PatienceCase{3, 0, 1},
                                           PatienceCase{3, 2, 1}, PatienceCase{2, 1, 3},
                                           PatienceCase{4, 2, 5}));

// min_improvement 0.1 relative to |best|: with best ±10 an improvement must exceed 1.
// With patience 0 the loop stops at the first validation that does not count,
// so the number of validations tells which ones counted.
struct ImprovementCase {
  std::vector<double> script;
  int counted;  // validations that counted as improvements (the first always does)
};

class MinImprovement : public ::testing::TestWithParam<ImprovementCase> {};

TEST_P(MinImprovement, IsRelativeToTheMagnitudeOfTheBest) {
  const auto& [script, counted] = GetParam();
  ScriptedLoss scripted(script);
  auto opt = scripted.build(
      downhill::Options().validate_every(1).patience(0).min_improvement(0.1).max_updates(100));
  downhill::Dataset train{downhill::Batch{}};
  const auto [training, validation] = opt->minimize(train);
  EXPECT_EQ(static_cast<int>(scripted.steps_at_validation.size()), counted + 1);
  // minimize() returns the last pass's pair, whose validation is the last one that counted.
  EXPECT_DOUBLE_EQ(validation.at("loss"), script[static_cast<size_t>(counted - 1)]);
  EXPECT_DOUBLE_EQ(scripted.value(), -static_cast<double>(counted - 1));
}

INSTANTIATE_TEST_SUITE_P(
    Loop, MinImprovement,
    ::testing::Values(
        // Positive best 10: 0.99 below does not count (an absolute 0.1 would), 1.01 does.
        ImprovementCase{{10.0, 9.01, 9.01}, 1}, ImprovementCase{{10.0, 8.99, 8.99}, 2},
        // Negative best −10: the threshold is |−10|·0.1 = 1, not −1.
        ImprovementCase{{-10.0, -10.99, -10.99}, 1}, ImprovementCase{{-10.0, -11.01, -11.01}, 2},
        // After best 8.99 the threshold is 0.899: 8.99 → 8.0 (0.99) counts, → 8.1 (0.89) not.
        ImprovementCase{{10.0, 8.99, 8.0, 8.0}, 3}, ImprovementCase{{10.0, 8.99, 8.1}, 2}));

TEST(Loop, ZeroMinImprovementCountsAnyDecreaseButNotAnEqualLoss) {
  ScriptedLoss scripted({5.0, 5.0 - 1e-12, 5.0 - 1e-12});
  auto opt = scripted.build(downhill::Options().validate_every(1).patience(0).max_updates(100));
  downhill::Dataset train{downhill::Batch{}};
  opt->minimize(train);
  EXPECT_EQ(scripted.steps_at_validation.size(), 3u);
  EXPECT_DOUBLE_EQ(scripted.value(), -1.0);
}

TEST(Loop, MaxUpdatesBoundsThePassesAndRestoresTheBest) {
  const auto script = falling(20);
  ScriptedLoss scripted(script);
  auto opt = scripted.build(downhill::Options().validate_every(2).patience(100).max_updates(7));
  downhill::Dataset train{downhill::Batch{}};
  const auto [training, validation] = opt->minimize(train);
  EXPECT_EQ(scripted.steps, 7);
  // Validations before passes 1, 3, 5 and 7, and a closing one of the final parameters.
  EXPECT_EQ(scripted.steps_at_validation, (std::vector<int64_t>{0, 2, 4, 6, 7}));
  // The last pair: the 7th pass saw x = −6 before its step; the 4th validation.
  EXPECT_DOUBLE_EQ(training.at("loss"), -6.0);
  EXPECT_DOUBLE_EQ(validation.at("loss"), script[3]);
  // The closing validation (script[4]) is the best: x stays at −7, after the 7th step.
  EXPECT_DOUBLE_EQ(scripted.value(), -7.0);
}

// The closing validation is held to the same rule: when it is not an improvement, the best
// validated parameters come back.
TEST(Loop, MaxUpdatesRestoresAnEarlierBestWhenTheClosingValidationIsWorse) {
  ScriptedLoss scripted(best_at(3));  // validations 1-3 improve, the 4th (closing) does not
  auto opt = scripted.build(downhill::Options().validate_every(2).patience(100).max_updates(5));
  downhill::Dataset train{downhill::Batch{}};
  opt->minimize(train);
  EXPECT_EQ(scripted.steps_at_validation, (std::vector<int64_t>{0, 2, 4, 5}));
  EXPECT_DOUBLE_EQ(scripted.value(), -4.0);  // the 3rd validation's parameters, after 4 steps
}

// max_updates below validate_every: the closing validation keeps the training.
TEST(Loop, MaxUpdatesBelowValidateEveryKeepsTheTraining) {
  ScriptedLoss scripted(falling(5));
  auto opt = scripted.build(downhill::Options().validate_every(10).max_updates(3));
  downhill::Dataset train{downhill::Batch{}};
  opt->minimize(train);
  EXPECT_EQ(scripted.steps_at_validation, (std::vector<int64_t>{0, 3}));
  EXPECT_DOUBLE_EQ(scripted.value(), -3.0);
}

// A non-finite validation is never the best: a NaN first validation does not block
// later improvements, and a NaN after a finite best is not an improvement.
TEST(Loop, NonFiniteValidationsNeverStandAsTheBest) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ScriptedLoss first_nan({nan, 50.0, 40.0, 45.0});
  auto opt = first_nan.build(downhill::Options().validate_every(1).patience(100).max_updates(3));
  downhill::Dataset train{downhill::Batch{}};
  opt->minimize(train);
  // Validations at 0 (NaN), 1 (50, the first finite: best), 2 (40: best), 3 (45: worse).
  EXPECT_EQ(first_nan.steps_at_validation, (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_DOUBLE_EQ(first_nan.value(), -2.0);

  ScriptedLoss later_nan({50.0, nan, nan});
  auto other = later_nan.build(downhill::Options().validate_every(1).patience(1));
  downhill::Dataset data{downhill::Batch{}};
  other->minimize(data);
  // 50 is best at 0; NaN at 1 and 2: patience 1 elapses at the third validation.
  EXPECT_EQ(later_nan.steps_at_validation, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_DOUBLE_EQ(later_nan.value(), 0.0);
}

// When no validation of the run is finite, the parameters are left as they are.
TEST(Loop, NoFiniteValidationLeavesTheParameters) {
  const double inf = std::numeric_limits<double>::infinity();
  ScriptedLoss scripted({inf});
  auto opt = scripted.build(downhill::Options().validate_every(1).patience(100).max_updates(2));
  downhill::Dataset train{downhill::Batch{}};
  opt->minimize(train);
  EXPECT_EQ(scripted.steps_at_validation, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_DOUBLE_EQ(scripted.value(), -2.0);
}

TEST(Loop, BreakLeavesTheParametersAndRestoreBestPutsTheBestBack) {
  // Validations at passes 0, 1, 2: the second is the best.
  ScriptedLoss scripted({5.0, 3.0, 4.0, 4.0});
  auto opt = scripted.build(downhill::Options().validate_every(1).patience(10));
  downhill::Dataset train{downhill::Batch{}};
  int items = 0;
  for (const auto& item : opt->iterate(train)) {
    (void)item;
    if (++items == 3) break;
  }
  EXPECT_EQ(scripted.steps, 3);
  EXPECT_DOUBLE_EQ(scripted.value(), -3.0);  // not restored
  opt->restore_best();
  EXPECT_DOUBLE_EQ(scripted.value(), -1.0);  // the parameters of validation 2, after 1 step
}

TEST(Loop, RestoreBestBeforeAnyValidationChangesNothing) {
  ScriptedLoss scripted({1.0});
  auto opt = scripted.build(downhill::Options());
  opt->step({});
  opt->restore_best();
  EXPECT_DOUBLE_EQ(scripted.value(), -1.0);
}

TEST(Loop, SetParamsCopiesValuesIn) {
  ScriptedLoss scripted({1.0});
  auto opt = scripted.build(downhill::Options());
  const auto handle = scripted.x;
  opt->set_params({torch::full({1}, 2.5, torch::kFloat64)});
  EXPECT_DOUBLE_EQ(handle.item<double>(), 2.5);
  EXPECT_THROW(opt->set_params({torch::zeros({2}, torch::kFloat64)}), std::invalid_argument);
}

TEST(Loop, ValidationDefaultsToTheTrainingDataAndUsesValidWhenGiven) {
  // The loss is the batch's mean; training and validation data differ in mean.
  auto w = torch::zeros({1}, torch::dtype(torch::kFloat64).requires_grad(true));
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    return batch[0].mean() + 0 * w.sum();
  };
  auto train_values = torch::full({6}, 2.0, torch::kFloat64);
  auto valid_values = torch::full({4}, 7.0, torch::kFloat64);
  downhill::Dataset train({train_values});
  downhill::Dataset valid({valid_values});
  auto opt = downhill::build("sgd", loss, {{"w", w}}, downhill::Options().max_updates(1));
  EXPECT_DOUBLE_EQ(opt->minimize(train).second.at("loss"), 2.0);
  EXPECT_DOUBLE_EQ(opt->minimize(train, &valid).second.at("loss"), 7.0);
}

// Monitors of a pass are weighted by each batch's number of samples.
TEST(Loop, TrainingAndValidationMonitorsAreWeightedBySamples) {
  // Ten samples in batches of 4, 4 and 2. The loss (the batch mean) does not
  // depend on w's value, so every step sees the same numbers.
  auto data = torch::arange(10, torch::kFloat64).square();
  auto w = torch::zeros({1}, torch::dtype(torch::kFloat64).requires_grad(true));
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    return {batch[0].mean() + 0 * w.sum(), {{"max", batch[0].max()}}};
  };
  double weighted_loss = 0, weighted_max = 0, unweighted_loss = 0;
  const std::vector<std::vector<double>> batches = {
      {0, 1, 4, 9}, {16, 25, 36, 49}, {64, 81}};  // the squares, in slices of 4
  for (const auto& batch : batches) {
    double sum = 0;
    for (double v : batch) sum += v;
    weighted_loss += sum / 10;
    weighted_max += *std::max_element(batch.begin(), batch.end()) * batch.size() / 10;
    unweighted_loss += sum / batch.size() / 3;
  }
  ASSERT_GT(std::abs(weighted_loss - unweighted_loss), 1.0);  // the test can tell them apart

  downhill::Dataset train({data}, downhill::DatasetOptions().batch_size(4));
  ASSERT_EQ(train.slice_count(), 3);
  auto opt = downhill::build("sgd", loss, {{"w", w}}, downhill::Options().max_updates(1));
  int items = 0;
  for (const auto& [training, validation] : opt->iterate(train)) {
    ++items;
    EXPECT_NEAR(training.at("loss"), weighted_loss, 1e-12);
    EXPECT_NEAR(training.at("max"), weighted_max, 1e-12);
    EXPECT_NEAR(validation.at("loss"), weighted_loss, 1e-12);
    EXPECT_NEAR(validation.at("max"), weighted_max, 1e-12);
    // The order of the monitors: "loss" first, then the loss function's.
    std::vector<std::string> names;
    for (const auto& [name, value] : training) names.push_back(name);
    EXPECT_EQ(names, (std::vector<std::string>{"loss", "max"}));
  }
  EXPECT_EQ(items, 1);
  const auto evaluated = opt->evaluate(train);
  EXPECT_NEAR(evaluated.at("loss"), weighted_loss, 1e-12);
}

TEST(Loop, GradMonitorIsTheL2NormOfTheRawGradient) {
  // loss = Σ(w − t)² + 3·Σb: ∂/∂w = 2(w − t), ∂/∂b = 3 per element.
  auto w = torch::tensor({1.0, 2.0, 3.0}, torch::dtype(torch::kFloat64).requires_grad(true));
  auto b = torch::tensor({0.5, -0.5}, torch::dtype(torch::kFloat64).requires_grad(true));
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    auto t = torch::tensor({0.0, 1.0, 1.0}, torch::kFloat64);
    return (w - t).square().sum() + 3 * b.sum();
  };
  // 2(w − t) = (2, 2, 4): norm √24. ∂/∂b = (3, 3): norm √18. Clipping to norm 1
  // changes the update but not the monitor, which reports the raw gradient.
  const double expected_w = std::sqrt(24.0), expected_b = std::sqrt(18.0);
  auto opt = downhill::build("sgd", loss, {{"w", w}, {"b", b}},
                             downhill::Options()
                                 .learning_rate(0.1)
                                 .max_gradient_norm(1)
                                 .monitor_gradients(true)
                                 .max_updates(1));
  const auto stepped = opt->step({});
  EXPECT_NEAR(stepped.at("grad(w)"), expected_w, 1e-12);
  EXPECT_NEAR(stepped.at("grad(b)"), expected_b, 1e-12);
  // The step was clipped: w moved by 0.1 · (2, 2, 4)/√24.
  EXPECT_NEAR(w[2].item<double>(), 3.0 - 0.1 * 4 / std::sqrt(24.0), 1e-12);

  // Through the loop (max_updates 1: exactly one item): the first pass reports
  // the gradient at the start of its only step, after the step above. 2(w − t) there:
  const double g0 = 2 * (1.0 - 0.1 * 2 / std::sqrt(24.0) - 0.0);
  const double g1 = 2 * (2.0 - 0.1 * 2 / std::sqrt(24.0) - 1.0);
  const double g2 = 2 * (3.0 - 0.1 * 4 / std::sqrt(24.0) - 1.0);
  downhill::Dataset none{downhill::Batch{}};
  int items = 0;
  for (const auto& [training, validation] : opt->iterate(none)) {
    ++items;
    EXPECT_NEAR(training.at("grad(w)"), std::sqrt(g0 * g0 + g1 * g1 + g2 * g2), 1e-12);
    EXPECT_NEAR(training.at("grad(b)"), expected_b, 1e-12);
    EXPECT_FALSE(validation.contains("grad(w)"));  // validation computes no gradients
  }
  EXPECT_EQ(items, 1);

  auto quiet = downhill::build("sgd", loss, {{"w", w}, {"b", b}}, downhill::Options());
  EXPECT_FALSE(quiet->step({}).contains("grad(w)"));
}

// downhill::minimize accepts a tensor, a Batch, a Dataset and a generator.
// The loss is the mean squared distance of the data from m, smallest at the
// data's mean; training and validation data both have mean 3 but different
// spreads, so the final losses are their (population) variances.
class MinimizeSources : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(5);
    const auto a = torch::randn({64}, torch::kFloat64);
    const auto b = torch::randn({32}, torch::kFloat64);
    train_values = a - a.mean() + 3;
    valid_values = 2 * (b - b.mean()) + 3;
    train_variance = (train_values - 3).square().mean().item<double>();
    valid_variance = (valid_values - 3).square().mean().item<double>();
    ASSERT_GT(std::abs(train_variance - valid_variance), 0.5);
  }

  downhill::Loss loss() {
    return [this](const downhill::Batch& batch) -> downhill::Evaluation {
      return (batch[0] - m).square().mean();
    };
  }

  // Full batches and SGD at rate 0.25: m ← m − 0.5(m − 3), converging geometrically.
  downhill::Options options() const {
    return downhill::Options().algo("sgd").learning_rate(0.25).batch_size(0).max_updates(300);
  }

  void expect_converged(const std::pair<downhill::Monitors, downhill::Monitors>& result,
                        double validation_variance) {
    // The loss is var + (m − 3)²; in double precision it stops changing once
    // |m − 3| is below about sqrt(1e-16 · var), so validation cannot pick a closer m.
    EXPECT_NEAR(m.item<double>(), 3.0, 1e-6);
    EXPECT_NEAR(result.first.at("loss"), train_variance, 1e-9);
    EXPECT_NEAR(result.second.at("loss"), validation_variance, 1e-9);
  }

  torch::Tensor m = torch::zeros({1}, torch::dtype(torch::kFloat64).requires_grad(true));
  torch::Tensor train_values, valid_values;
  double train_variance = 0, valid_variance = 0;
};

TEST_F(MinimizeSources, Tensor) {
  expect_converged(downhill::minimize(loss(), {{"m", m}}, train_values, options()), train_variance);
}

TEST_F(MinimizeSources, TensorWithValidation) {
  expect_converged(downhill::minimize(loss(), {{"m", m}}, train_values, valid_values, options()),
                   valid_variance);
}

TEST_F(MinimizeSources, Batch) {
  expect_converged(downhill::minimize(loss(), {{"m", m}}, downhill::Batch{train_values},
                                      downhill::Batch{valid_values}, options()),
                   valid_variance);
}

TEST_F(MinimizeSources, Dataset) {
  downhill::Dataset train({train_values}, downhill::DatasetOptions().batch_size(0));
  downhill::Dataset valid({valid_values}, downhill::DatasetOptions().batch_size(0));
  expect_converged(downhill::minimize(loss(), {{"m", m}}, train, valid, options()), valid_variance);
  expect_converged(downhill::minimize(loss(), {{"m", m}}, train, options()), train_variance);
}

TEST_F(MinimizeSources, Generator) {
  int train_calls = 0, valid_calls = 0;
  auto train = [&] {
    ++train_calls;
    return downhill::Batch{train_values};
  };
  auto valid = [&] {
    ++valid_calls;
    return downhill::Batch{valid_values};
  };
  // A patience longer than the run, so that it ends at max_updates (300 passes)
  // rather than whenever rounding stops the validation loss from falling.
  auto settings = options().train_batches(2).valid_batches(3).validate_every(1).patience(1000);
  expect_converged(downhill::minimize(loss(), {{"m", m}}, train, valid, settings), valid_variance);
  // 300 passes of 2 training batches; a validation of 3 batches before each pass
  // (validate_every 1: passes 0..299), and a closing one after the last.
  EXPECT_EQ(train_calls, 300 * 2);
  EXPECT_EQ(valid_calls, 301 * 3);
}

TEST_F(MinimizeSources, MixedKinds) {
  downhill::Dataset valid({valid_values});
  expect_converged(downhill::minimize(
                       loss(), {{"m", m}}, [&] { return downhill::Batch{train_values}; }, valid,
                       options().train_batches(1)),
                   valid_variance);
}

TEST(Loop, MinimizeOnADatasetOfNoTensors) {
  auto p = torch::tensor({4.0, -2.0}, torch::dtype(torch::kFloat64).requires_grad(true));
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    EXPECT_TRUE(batch.empty());
    return (p - 1).square().sum();
  };
  downhill::minimize(loss, {{"p", p}}, downhill::Batch{},
                     downhill::Options().algo("sgd").learning_rate(0.25).max_updates(200));
  EXPECT_NEAR(p[0].item<double>(), 1.0, 1e-9);
  EXPECT_NEAR(p[1].item<double>(), 1.0, 1e-9);
}

// The seed's check: NAG on the 2-D Rosenbrock function from (−3, −3), as in
// downhill's own tests, with learning rate 1e-3, momentum 0.9, patience 1,
// min_improvement 0.1 and max_gradient_norm 1. The loss needs no data: each
// pass is train_batches(100) updates on an empty batch, validated every pass
// (validate_every 1) on one empty batch of the validation data, so each
// validation sees 100 more updates. One parameter holds (x, y), as in
// downhill's tests, so clipping applies to the whole gradient.
struct RosenbrockRun {
  double x, y, loss;
  int64_t updates;
};

RosenbrockRun nag_on_rosenbrock(torch::Dtype dtype) {
  auto xy = torch::tensor({-3.0, -3.0}, torch::dtype(dtype).requires_grad(true));
  int64_t updates = 0;
  auto rosenbrock = [&](const downhill::Batch&) -> downhill::Evaluation {
    if (torch::GradMode::is_enabled()) ++updates;
    auto x = xy[0], y = xy[1];
    return {(1 - x).square() + 100 * (y - x.square()).square(), {{"x", x}, {"y", y}}};
  };
  const auto [training, validation] =
      downhill::minimize(rosenbrock, {{"xy", xy}}, downhill::Batch{}, downhill::Batch{},
                         downhill::Options()
                             .algo("nag")
                             .learning_rate(1e-3)
                             .momentum(0.9)
                             .patience(1)
                             .min_improvement(0.1)
                             .max_gradient_norm(1)
                             .validate_every(1)
                             .train_batches(100)
                             .max_updates(1000));
  return {xy[0].item<double>(), xy[1].item<double>(), validation.at("loss"), updates};
}

TEST(Loop, NagOnRosenbrockEndsNearTheMinimum) {
  for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
    SCOPED_TRACE(std::string("dtype ") + c10::toString(dtype));
    const auto run = nag_on_rosenbrock(dtype);
    const std::string prefix = dtype == torch::kFloat64 ? "double_" : "float_";
    RecordProperty(prefix + "x", std::to_string(run.x));
    RecordProperty(prefix + "y", std::to_string(run.y));
    RecordProperty(prefix + "loss", std::to_string(run.loss));
    RecordProperty(prefix + "updates", std::to_string(run.updates));
    EXPECT_NEAR(run.x, 1.0, 0.1);
    EXPECT_NEAR(run.y, 1.0, 0.1);
    EXPECT_LT(run.loss, 0.01);
    // Ended by patience, not by max_updates.
    EXPECT_LT(run.updates, 1000 * 100);
  }
}

}  // namespace
