// What a second adversarial probe broke, outside checkpoints (those are in
// checkpoint_schema_test): a reduction that made the learning rate invalid, a learning rate
// that float32 rounds to 0, ambiguous state names, a factory returning null and a sparse
// gradient, monitor names that are not UTF-8 in the history file, a checkpoint path where
// nothing can be created, and a schedule's factor beyond float32's range. Each is refused by name,
// or kept within what is valid.
#include <downhill/downhill.h>
#include <downhill/rule.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <array>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "test_support.h"

namespace {

using downhill::testing::LogCapture;
using downhill::testing::message_of;
using downhill::testing::ScopedLogLevel;
using downhill::testing::TemporaryFolder;
using ::testing::AllOf;
using ::testing::HasSubstr;

// ---- reduce on plateau never makes the learning rate invalid ----

// A loss that never improves (constant), validated every pass with plateau_patience 1: each
// validation after the first reduces the rate by `factor`.
double rate_after_plateaus(torch::Tensor x, double rate, double factor, int passes,
                           std::string* log = nullptr) {
  auto loss = [x](const downhill::Batch&) -> downhill::Evaluation { return (x * 0).sum() + 1; };
  auto opt = downhill::build("sgd", loss, {{"x", x}},
                             downhill::Options()
                                 .learning_rate(rate)
                                 .plateau_patience(1)
                                 .plateau_factor(factor)
                                 .validate_every(1)
                                 .patience(1000)
                                 .max_updates(passes));
  downhill::Dataset none{downhill::Batch{}};
  LogCapture capture;
  for (const auto& pass : opt->iterate(none)) (void)pass;
  if (log) *log = capture.text();
  // The rate stays one the settings accept: a live change and a checkpoint round trip work.
  opt->change_options([](downhill::Options& o) { o.momentum(0.0); });
  TemporaryFolder folder("plateau");
  opt->save_checkpoint(folder.file("a.ckpt"));
  opt->load_checkpoint(folder.file("a.ckpt"));
  return opt->options().learning_rate();
}

TEST(PlateauReduction, StopsAtTheSmallestRateADoubleParameterAccepts) {
  auto x = torch::ones({2}, torch::kDouble).requires_grad_(true);
  std::string log;
  // 1e-320 · 0.01ᵏ reaches 0 within 3 reductions; any positive double is a valid rate for
  // double parameters, so the smallest accepted is the smallest positive double.
  const double rate = rate_after_plateaus(x, 1e-320, 0.01, 8, &log);
  EXPECT_EQ(rate, std::numeric_limits<double>::denorm_min());
  const std::string said = "the learning rate is the smallest the settings accept";
  const auto first = log.find(said);
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find(said, first + 1), std::string::npos) << "said twice:\n" << log;
}

TEST(PlateauReduction, StopsAtTheSmallestRateFloat32DoesNotRoundTo0) {
  auto x = torch::ones({2}).requires_grad_(true);
  // float32 rounds a rate to its nearest float: the smallest subnormal float f, for rates
  // above f/2 (exactly f/2 is a tie, which rounds to the even 0).
  const double smallest =
      std::nextafter(static_cast<double>(std::numeric_limits<float>::denorm_min()) / 2, 1.0);
  EXPECT_EQ(rate_after_plateaus(x, 1e-40, 0.01, 8), smallest);
  EXPECT_NE(static_cast<float>(smallest), 0.0f);
  EXPECT_EQ(static_cast<float>(std::nextafter(smallest, 0.0)), 0.0f);
}

// ---- a learning rate float32 rounds to 0 ----

TEST(VanishingSettings, ALearningRateThatIs0InFloat32IsRefused) {
  auto w = torch::ones({3});
  const auto message = message_of<std::invalid_argument>([&] {
    downhill::build("sgd", {{"w", w}}, downhill::Options().learning_rate(1e-46));
  });
  EXPECT_THAT(message, AllOf(HasSubstr("learning_rate = 1e-46"), HasSubstr("0 once rounded"),
                             HasSubstr("float32"), HasSubstr("'w'")));
  // The same rate for double parameters is a number they hold.
  auto d = torch::ones({3}, torch::kDouble);
  EXPECT_NO_THROW(downhill::build("sgd", {{"d", d}}, downhill::Options().learning_rate(1e-46)));
}

TEST(VanishingSettings, WeightDecayTimesTheRateThatIs0InFloat32IsRefused) {
  auto w = torch::ones({3});
  const auto message = message_of<std::invalid_argument>([&] {
    downhill::build("sgd", {{"w", w}},
                    downhill::Options().learning_rate(1e-30).weight_decay(1e-20));
  });
  EXPECT_THAT(message, AllOf(HasSubstr("weight_decay = 1e-20"), HasSubstr("0 once rounded")));
  // And live: change_options refuses it, changing nothing.
  auto opt = downhill::build("sgd", {{"w", w}}, downhill::Options().learning_rate(0.1));
  EXPECT_THROW(opt->change_options([](downhill::Options& o) { o.learning_rate(1e-47); }),
               std::invalid_argument);
  EXPECT_EQ(opt->options().learning_rate(), 0.1);
}

// ---- a schedule's factor beyond float32's range ----

// lr·f(t) is formed in double and rounded once: lr = 1e-30 and f = 1e39 make a float32 rate
// of 1e9, though f alone is infinite in float32.
TEST(ScheduleFactor, TheRateTimesTheFactorIsRoundedOnceNotTheFactorAlone) {
  auto w = torch::ones({2});
  auto opt = downhill::build("sgd", {{"w", w}},
                             downhill::Options().learning_rate(1e-30).learning_rate_schedule(
                                 downhill::schedules::constant(1e39)));
  ASSERT_TRUE(opt->apply({torch::full({2}, 1e-12)}));
  // 1 − (1e-30·1e39)·1e-12 = 1 − 1e-3.
  EXPECT_NEAR(w[0].item<double>(), 0.999, 1e-6);
  EXPECT_NEAR(w[1].item<double>(), 0.999, 1e-6);
}

TEST(ScheduleFactor, TheDecayIsTheRateTimesTheFactorTimesLambdaRoundedOnce) {
  auto w = torch::ones({1});
  auto opt = downhill::build(
      "sgd", {{"w", w}},
      downhill::Options().learning_rate(1e-30).weight_decay(1e-9).learning_rate_schedule(
          downhill::schedules::constant(1e39)));
  ASSERT_TRUE(opt->apply({torch::full({1}, 1e-12)}));
  // u = 1e9·1e-12 = 1e-3, decay 1e9·1e-9 = 1: p ← 1 − (1e-3 + 1·1).
  EXPECT_NEAR(w[0].item<double>(), -1e-3, 1e-6);
}

// ADADELTA has no learning rate: f(t) multiplies its update, as two float32 factors.
TEST(ScheduleFactor, AFactorBeyondFloat32ScalesASmallUpdateOfARuleWithoutARate) {
  auto w = torch::zeros({1});
  auto opt = downhill::build(
      "adadelta", {{"w", w}},
      downhill::Options().learning_rate_schedule(downhill::schedules::constant(1e39)));
  // g² is 0 in float32, so the update is g·√ε/√ε = g; times f: 1e-35·1e39 = 1e4.
  ASSERT_TRUE(opt->apply({torch::full({1}, 1e-35)}));
  EXPECT_NEAR(w[0].item<double>(), -1e4, 1e-1);
}

TEST(ScheduleFactor, AProductInfiniteInFloat32IsRefusedWithNothingChanged) {
  auto w = torch::ones({2});
  auto opt = downhill::build("sgd", {{"w", w}},
                             downhill::Options().learning_rate(1).learning_rate_schedule(
                                 downhill::schedules::constant(1e39)));
  const auto message =
      message_of<std::invalid_argument>([&] { opt->apply({torch::full({2}, 1e-12)}); });
  EXPECT_THAT(message, AllOf(HasSubstr("learning_rate_schedule(0) = 1e+39"),
                             HasSubstr("infinite in float32"), HasSubstr("no update was applied")));
  EXPECT_TRUE(torch::equal(w, torch::ones({2})));
  EXPECT_EQ(opt->update_count(), 0);
  // float64 holds the product.
  auto d = torch::ones({1}, torch::kDouble);
  auto wide = downhill::build("sgd", {{"d", d}},
                              downhill::Options().learning_rate(1).learning_rate_schedule(
                                  downhill::schedules::constant(1e39)));
  ASSERT_TRUE(wide->apply({torch::full({1}, 1e-39, torch::kDouble)}));
  EXPECT_NEAR(d[0].item<double>(), 0.0, 1e-12);
}

// ---- state names ----

template <typename V>
struct TwoOfOneName {
  static constexpr const char* name = "TwoOfOneName";
  static constexpr std::array<const char*, 2> state = {"m", "m"};
  V lr;
  explicit TwoOfOneName(const downhill::RuleContext& c) : lr(c.constant<V>(c.learning_rate())) {}
  V operator()(const V& g, std::array<V, 2>&) const { return lr * g; }
};

template <typename V>
struct NamedVelocity {
  static constexpr const char* name = "NamedVelocity";
  static constexpr std::array<const char*, 1> state = {"velocity"};
  V lr;
  explicit NamedVelocity(const downhill::RuleContext& c) : lr(c.constant<V>(c.learning_rate())) {}
  V operator()(const V& g, std::array<V, 1>&) const { return lr * g; }
};

TEST(StateNames, ARuleWithTwoSlotsOfOneNameIsRefusedAtRegistration) {
  const auto message =
      message_of<std::invalid_argument>([] { downhill::register_rule<TwoOfOneName>(); });
  EXPECT_THAT(message,
              AllOf(HasSubstr("TwoOfOneName"), HasSubstr("'m'"), HasSubstr("slots 0 and 1")));
  EXPECT_THROW(downhill::build("twoofonename", {{"w", torch::ones({2})}}, downhill::Options()),
               std::invalid_argument);  // not registered
}

TEST(StateNames, ASlotNamedVelocityIsRefusedAtRegistration) {
  const auto message =
      message_of<std::invalid_argument>([] { downhill::register_rule<NamedVelocity>(); });
  EXPECT_THAT(message, AllOf(HasSubstr("NamedVelocity"), HasSubstr("'velocity'")));
}

// An Optimizer subclass names its state through a virtual: seen at the first update, which it
// refuses before changing anything.
class Ambiguous : public downhill::Optimizer {
 public:
  explicit Ambiguous(downhill::Params params)
      : Optimizer("Ambiguous", {}, std::move(params), downhill::Options()) {}

 protected:
  std::vector<std::string> state_names() const override { return {"a", "b", "a"}; }
  torch::Tensor compute_update(size_t, const torch::Tensor& grad, const torch::Tensor&,
                               std::vector<torch::Tensor>&) override {
    return 0.1 * grad;
  }
};

TEST(StateNames, ASubclassWithTwoSlotsOfOneNameIsRefusedAtItsFirstUpdate) {
  auto w = torch::ones({2});
  Ambiguous opt({{"w", w}});
  const auto message = message_of<std::invalid_argument>([&] { opt.apply({torch::ones({2})}); });
  EXPECT_THAT(message, AllOf(HasSubstr("Ambiguous"), HasSubstr("'a'"), HasSubstr("slots 0 and 2")));
  EXPECT_TRUE(torch::equal(w, torch::ones({2})));
}

// ---- a factory that returns no optimizer ----

TEST(Registry, AFactoryReturningNullIsRefusedAtBuildNamingTheAlgorithm) {
  downhill::register_algorithm("probe_null_factory",
                               [](downhill::Loss, downhill::Params, downhill::Options) {
                                 return std::unique_ptr<downhill::Optimizer>();
                               });
  const auto message = message_of<std::invalid_argument>([] {
    downhill::build("probe_null_factory", {{"w", torch::ones({2})}}, downhill::Options());
  });
  EXPECT_THAT(message, AllOf(HasSubstr("'probe_null_factory'"), HasSubstr("null")));
}

// ---- a sparse gradient ----

TEST(Gradients, ASparseGradientIsRefusedNamingTheParameterAndLayout) {
  auto w = torch::ones({4});
  auto opt = downhill::build("adam", {{"w", w}}, downhill::Options());
  const auto sparse = torch::ones({4}).to_sparse();
  const auto message = message_of<std::invalid_argument>([&] { opt->apply({sparse}); });
  EXPECT_THAT(message, AllOf(HasSubstr("parameter 'w'"), HasSubstr("Sparse"), HasSubstr("dense")));
  EXPECT_TRUE(torch::equal(w, torch::ones({4})));
  EXPECT_EQ(opt->update_count(), 0);
}

// ---- the history file is JSON whatever the monitors are named ----

TEST(HistoryFile, MonitorNamesThatAreNotUtf8StillParse) {
  const ScopedLogLevel quiet(spdlog::level::off);
  TemporaryFolder folder("history_utf8");
  const auto path = folder.file("run.jsonl");
  auto x = torch::ones({1}, torch::kDouble).requires_grad_(true);
  const std::string raw = "\xff\xfe", accented = "caf\xc3\xa9";  // not UTF-8, and "café"
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    return {x.sum(), {{raw, x.sum() * 2}, {accented, x.sum() * 3}}};
  };
  auto opt =
      downhill::build("sgd", loss, {{"x", x}}, downhill::Options().max_updates(2).history(path));
  downhill::Dataset none{downhill::Batch{}};
  for (const auto& pass : opt->iterate(none)) (void)pass;
  std::ifstream in(path);
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    SCOPED_TRACE(line);
    nlohmann::json record;
    ASSERT_NO_THROW(record = nlohmann::json::parse(line));  // which checks UTF-8
    // Each byte that is not UTF-8 is U+FFFD; well-formed UTF-8 is kept as it is.
    int monitor_sets = 0;
    for (const auto* part : {"train", "valid"}) {
      if (!record.contains(part)) continue;
      ++monitor_sets;
      EXPECT_TRUE(record[part].contains("\xef\xbf\xbd\xef\xbf\xbd")) << part;
      EXPECT_TRUE(record[part].contains(accented)) << part;
    }
    EXPECT_GE(monitor_sets, 1);
  }
  EXPECT_GE(lines, 2);
}

// ---- the checkpoint path, tried by creating ----

TEST(CheckpointPath, ADirectoryOrAFolderWhereNothingCanBeCreatedIsRefusedBeforeAnyStep) {
  const ScopedLogLevel quiet(spdlog::level::off);
  TemporaryFolder folder("checkpoint_dir");
  for (const auto& [path, says] : std::vector<std::pair<std::string, std::string>>{
           {folder.path(), "is a directory"}, {"/proc/downhill_probe.ckpt", "create"}}) {
    SCOPED_TRACE(path);
    auto x = torch::ones({1}, torch::kDouble).requires_grad_(true);
    int steps = 0;
    auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
      ++steps;
      return x.sum();
    };
    auto opt = downhill::build("sgd", loss, {{"x", x}},
                               downhill::Options().max_updates(2).checkpoint(path));
    downhill::Dataset none{downhill::Batch{}};
    const auto message = message_of<std::invalid_argument>([&] {
      for (const auto& pass : opt->iterate(none)) (void)pass;
    });
    EXPECT_THAT(message, AllOf(HasSubstr("checkpoint '" + path + "'"), HasSubstr(says)));
    EXPECT_EQ(steps, 0);
  }
}

// ---- what a loss, a monitor or a dataset holds ----

TEST(Evaluations, AComplexMonitorIsRefusedNamingIt) {
  auto x = torch::ones({1}, torch::kDouble).requires_grad_(true);
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    return {x.sum(), {{"phase", torch::complex(x.sum(), x.sum())}}};
  };
  auto opt = downhill::build("sgd", loss, {{"x", x}}, downhill::Options());
  const auto message = message_of<std::invalid_argument>([&] { opt->step({}); });
  EXPECT_THAT(message, AllOf(HasSubstr("monitor 'phase'"), HasSubstr("complex")));
  EXPECT_EQ(x.item<double>(), 1.0);
}

TEST(Evaluations, AMetaLossOrMonitorIsRefused) {
  auto x = torch::ones({1}, torch::kDouble).requires_grad_(true);
  const auto meta = torch::empty({}, torch::TensorOptions().dtype(torch::kDouble).device("meta"));
  auto meta_loss = downhill::build(
      "sgd", [&](const downhill::Batch&) -> downhill::Evaluation { return meta; }, {{"x", x}},
      downhill::Options());
  EXPECT_THAT(message_of<std::invalid_argument>([&] { meta_loss->step({}); }),
              AllOf(HasSubstr("the loss"), HasSubstr("meta")));
  auto meta_monitor = downhill::build(
      "sgd",
      [&](const downhill::Batch&) -> downhill::Evaluation {
        return {x.sum(), {{"m", meta}}};
      },
      {{"x", x}}, downhill::Options());
  EXPECT_THAT(message_of<std::invalid_argument>([&] { meta_monitor->step({}); }),
              AllOf(HasSubstr("monitor 'm'"), HasSubstr("meta")));
}

TEST(Datasets, MetaArraysAndAnEmptyGeneratorAreRefusedWhereTheyEnter) {
  const auto meta = torch::empty({4}, torch::TensorOptions().device("meta"));
  EXPECT_THAT(
      message_of<std::invalid_argument>([&] { downhill::Dataset data(downhill::Batch{meta}); }),
      AllOf(HasSubstr("array 0"), HasSubstr("meta")));
  EXPECT_THAT(message_of<std::invalid_argument>(
                  [] { downhill::Dataset data(std::function<downhill::Batch()>{}); }),
              HasSubstr("generator is empty"));
}

TEST(Evaluations, TwentyThousandMonitorsAreMatchedByName) {
  // Many monitors (their time, linear in their number, is for bench/; here, that each is
  // recorded once and averaged right).
  auto x = torch::ones({1}, torch::kDouble).requires_grad_(true);
  std::vector<std::string> names;
  for (int k = 0; k < 20000; ++k) names.push_back("m" + std::to_string(k));
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    std::vector<std::pair<std::string, torch::Tensor>> monitors;
    for (size_t k = 0; k < names.size(); ++k) {
      monitors.emplace_back(names[k], torch::full({}, static_cast<double>(k)));
    }
    return {x.sum(), std::move(monitors)};
  };
  auto opt = downhill::build("sgd", loss, {{"x", x}}, downhill::Options());
  downhill::Dataset two(downhill::Batch{}, downhill::DatasetOptions().iteration_size(2));
  const auto monitors = opt->evaluate(two);
  ASSERT_EQ(monitors.size(), 20001u);
  EXPECT_EQ(monitors.at("m0"), 0.0);
  EXPECT_EQ(monitors.at("m19999"), 19999.0);
  EXPECT_EQ(monitors.at("m12345"), 12345.0);
}

// ---- a parameter whose elements share memory ----

TEST(Parameters, ElementsThatShareMemoryAreRefusedAtBuild) {
  const std::vector<std::pair<std::string, torch::Tensor>> overlapping = {
      {"a stride of 0", torch::zeros({1}).as_strided({4}, {0})},
      {"expand", torch::zeros({1, 3}).expand({4, 3})},
      {"sliding windows", torch::zeros({6}).as_strided({3, 3}, {1, 1})},
  };
  for (const auto& [label, tensor] : overlapping) {
    SCOPED_TRACE(label);
    const auto message = message_of<std::invalid_argument>([&] {
      downhill::build("sgd", {{"w", tensor}}, downhill::Options());
    });
    EXPECT_THAT(message, AllOf(HasSubstr("parameter 'w'"), HasSubstr("share memory")));
  }
  // Views whose elements are distinct are parameters as any other.
  for (const auto& distinct : {torch::zeros({8}).slice(0, 0, 8, 2), torch::zeros({3, 4}).t(),
                               torch::zeros({4, 6}).slice(1, 1, 5)}) {
    auto opt = downhill::build("sgd", {{"w", distinct}}, downhill::Options().learning_rate(0.5));
    ASSERT_TRUE(opt->apply({torch::ones_like(distinct)}));
    EXPECT_TRUE(torch::equal(distinct, torch::full_like(distinct, -0.5)));
  }
}

}  // namespace
