// A NaN or an infinity never reaches the parameters or the optimizer state: the
// update is skipped, counted, and too many in a row end the run (issue 5).
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using downhill::testing::LogCapture;
using downhill::testing::ScopedLogLevel;

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// A batch of this problem is {offset, gradient_scale}: the loss is
// ‖a − 1‖² + ‖b·c‖² + offset, and the gradient of `a` is multiplied by
// gradient_scale on its way back (a hook), so either the loss alone or a
// gradient alone can be made non-finite.
struct Problem {
  torch::Tensor a = torch::full({3, 2}, 0.5, torch::requires_grad());
  torch::Tensor b = torch::full({4}, 2.0, torch::requires_grad());

  downhill::Params params() const { return {{"a", a}, {"b", b}}; }

  downhill::Loss loss() const {
    return [a = a, b = b](const downhill::Batch& batch) -> downhill::Evaluation {
      auto scaled = a * 1.0;
      const double scale = batch[1].item<double>();
      if (scale != 1.0 && scaled.requires_grad()) {
        scaled.register_hook([scale](torch::Tensor grad) { return grad * scale; });
      }
      auto value = (scaled - 1).square().sum() + (b * b).sum() * 0.1 + batch[0].sum();
      return {value, {{"b_sum", b.sum()}}};
    };
  }
};

downhill::Batch good_batch() { return {torch::tensor({0.0}), torch::tensor(1.0)}; }
downhill::Batch bad_loss_batch(double v) { return {torch::tensor({v}), torch::tensor(1.0)}; }
downhill::Batch bad_gradient_batch(double scale) {
  return {torch::tensor({0.0}), torch::tensor(scale)};
}

std::vector<torch::Tensor> snapshot(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.detach().clone());
  return out;
}

std::vector<torch::Tensor> state_snapshot(downhill::Optimizer& opt) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, tensor] : opt.state()) out.push_back(tensor.detach().clone());
  return out;
}

void expect_bit_identical(const std::vector<torch::Tensor>& expected,
                          const std::vector<torch::Tensor>& actual, const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_TRUE(torch::equal(expected[i], actual[i].detach())) << what << " " << i;
  }
}

struct BadStep {
  std::string label;
  downhill::Batch batch;
  std::string reason;  // what the warning says
};

std::vector<BadStep> bad_steps() {
  return {
      {"loss NaN", bad_loss_batch(kNaN), "non-finite loss"},
      {"loss +Inf", bad_loss_batch(kInf), "non-finite loss"},
      {"loss -Inf", bad_loss_batch(-kInf), "non-finite loss"},
      {"gradient NaN", bad_gradient_batch(kNaN), "non-finite gradient for parameter 'a'"},
      {"gradient +Inf", bad_gradient_batch(kInf), "non-finite gradient for parameter 'a'"},
      {"gradient -Inf", bad_gradient_batch(-kInf), "non-finite gradient for parameter 'a'"},
  };
}

class NonFiniteStep : public ::testing::TestWithParam<std::string> {};

TEST_P(NonFiniteStep, SkipsTheUpdateLeavingParametersStateAndCountBitExact) {
  for (const auto& bad : bad_steps()) {
    SCOPED_TRACE(GetParam() + ", " + bad.label);
    torch::manual_seed(11);
    Problem problem;
    auto opt = downhill::build(GetParam(), problem.loss(), problem.params(),
                               downhill::Options().learning_rate(0.01).momentum(0.9));
    // Some good steps first, so that every state tensor and the velocity are non-trivial.
    for (int i = 0; i < 3; ++i) opt->step(good_batch());
    const auto params_before = snapshot(opt->tensors());
    const auto state_before = state_snapshot(*opt);
    ASSERT_FALSE(state_before.empty());
    const auto count_before = opt->update_count();
    ASSERT_EQ(count_before, 3);

    LogCapture log;
    const auto monitors = opt->step(bad.batch);
    EXPECT_EQ(log.warnings_with(bad.reason), 1) << log.text();
    EXPECT_EQ(log.warnings_with("skipped"), 1) << log.text();
    expect_bit_identical(params_before, opt->tensors(), "parameter");
    expect_bit_identical(state_before, state_snapshot(*opt), "state tensor");
    EXPECT_EQ(opt->update_count(), count_before);
    EXPECT_TRUE(monitors.contains("loss"));

    // The run carries on from exactly where it was: one more good step equals a
    // twin optimizer's fourth good step.
    opt->step(good_batch());
    torch::manual_seed(11);
    Problem twin;
    auto reference = downhill::build(GetParam(), twin.loss(), twin.params(),
                                     downhill::Options().learning_rate(0.01).momentum(0.9));
    for (int i = 0; i < 4; ++i) reference->step(good_batch());
    if (GetParam() != "esgd") {  // ESGD's probes differ by the skipped draw
      expect_bit_identical(snapshot(reference->tensors()), opt->tensors(), "after resuming");
    }
    EXPECT_EQ(opt->update_count(), 4);
  }
}

INSTANTIATE_TEST_SUITE_P(EveryAlgorithm, NonFiniteStep,
                         ::testing::ValuesIn(downhill::builtin_algorithm_names()),
                         [](const auto& info) { return info.param; });

TEST(NonFiniteApply, NaNOrInfiniteGradientReturnsFalseAndChangesNothing) {
  ScopedLogLevel quiet(spdlog::level::off);
  for (const char* algo : {"sgd", "rmsprop", "adam", "rprop"}) {
    SCOPED_TRACE(algo);
    auto a = torch::ones({5});
    auto b = torch::ones({2, 2});
    auto opt = downhill::build(algo, {{"a", a}, {"b", b}},
                               downhill::Options().learning_rate(0.1).momentum(0.5));
    ASSERT_TRUE(opt->apply({torch::full({5}, 0.5), torch::full({2, 2}, -0.25)}));
    const auto params_before = snapshot({a, b});
    const auto state_before = state_snapshot(*opt);
    for (double bad : {kNaN, kInf, -kInf}) {
      // Only one element of the second parameter is bad; the first parameter is not touched either.
      auto grad_b = torch::full({2, 2}, -0.25);
      grad_b[1][0] = bad;
      EXPECT_FALSE(opt->apply({torch::full({5}, 0.5), grad_b}));
      expect_bit_identical(params_before, {a, b}, "parameter");
      expect_bit_identical(state_before, state_snapshot(*opt), "state tensor");
      EXPECT_EQ(opt->update_count(), 1);
    }
  }
}

TEST(NonFiniteApply, NaNHessianVectorProductIsSkippedByEsgd) {
  ScopedLogLevel quiet(spdlog::level::off);
  auto a = torch::ones({3});
  auto opt = downhill::build("esgd", {{"a", a}}, downhill::Options().learning_rate(0.1));
  ASSERT_TRUE(opt->apply({torch::ones({3})}, {torch::ones({3})}));
  const auto state_before = state_snapshot(*opt);
  const auto params_before = snapshot({a});
  EXPECT_FALSE(opt->apply({torch::ones({3})}, {torch::full({3}, kNaN)}));
  expect_bit_identical(params_before, {a}, "parameter");
  expect_bit_identical(state_before, state_snapshot(*opt), "state tensor");
  EXPECT_EQ(opt->update_count(), 1);
}

TEST(NonFiniteApply, HugeButFiniteGradientIsNotMistakenForANonFiniteOne) {
  ScopedLogLevel quiet(spdlog::level::off);
  // Squaring 1e200 overflows a double, but the gradient itself is finite.
  const auto huge = torch::full({4}, 1e200, torch::kDouble);
  auto a = torch::zeros({4}, torch::kDouble);
  auto plain = downhill::build("sgd", {{"a", a}}, downhill::Options().learning_rate(1e-200));
  EXPECT_TRUE(plain->apply({huge}));
  EXPECT_TRUE(torch::allclose(a, torch::full({4}, -1e-200 * 1e200, torch::kDouble)));
  EXPECT_EQ(plain->update_count(), 1);

  // Norm clipping needs that norm, 2e200: the clipped gradient is 0.5 per element.
  auto b = torch::zeros({4}, torch::kDouble);
  auto clipped = downhill::build("sgd", {{"b", b}},
                                 downhill::Options().learning_rate(0.1).max_gradient_norm(1));
  EXPECT_TRUE(clipped->apply({huge}));
  EXPECT_TRUE(torch::allclose(b, torch::full({4}, -0.05, torch::kDouble)));
}

// A training dataset whose k-th batch (counting from 1 over the whole run) is bad
// when k is in `bad_calls`; `calls` counts them.
downhill::Dataset scheduled_data(std::set<int> bad_calls, int& calls, int batches_per_pass) {
  return downhill::Dataset(
      [bad_calls, &calls]() {
        return bad_calls.count(++calls) ? bad_gradient_batch(kNaN) : good_batch();
      },
      downhill::DatasetOptions().iteration_size(batches_per_pass).name("train"));
}

downhill::Dataset clean_validation() {
  return downhill::Dataset([] { return good_batch(); },
                           downhill::DatasetOptions().iteration_size(1).name("valid"));
}

double skipped_of(const downhill::Monitors& monitors) {
  return monitors.contains("skipped") ? monitors.at("skipped") : 0.0;
}

TEST(NonFiniteLoop, EachPassCountsItsSkippedUpdates) {
  ScopedLogLevel quiet(spdlog::level::off);
  Problem problem;
  int calls = 0;
  // Passes of 5 batches: pass 1 has two bad batches, pass 2 none, pass 3 three.
  auto train = scheduled_data({2, 4, 11, 13, 15}, calls, 5);
  auto valid = clean_validation();
  auto opt = downhill::build("adam", problem.loss(), problem.params(),
                             downhill::Options().learning_rate(0.01).max_nonfinite(2));
  std::vector<double> skipped;
  for (const auto& [training, validation] : opt->iterate(train, &valid)) {
    skipped.push_back(skipped_of(training));
    if (skipped.size() == 4) break;
  }
  EXPECT_EQ(skipped, (std::vector<double>{2, 0, 3, 0}));
  EXPECT_EQ(opt->update_count(), 20 - 5);
}

TEST(NonFiniteLoop, TooManyConsecutiveSkipsRestoreTheBestAndThrowSayingHowManyAndWhere) {
  LogCapture log;
  Problem problem;
  const auto initial = snapshot(problem.params().tensors());
  int calls = 0;
  // Pass 1 is batches 1-5; pass 2 is 6-10: from batch 7 on, every one is bad.
  std::set<int> bad;
  for (int k = 7; k < 100; ++k) bad.insert(k);
  auto train = scheduled_data(bad, calls, 5);
  auto valid = clean_validation();
  // One validation only (pass 0), so the best parameters are the initial ones.
  auto opt = downhill::build(
      "rmsprop", problem.loss(), problem.params(),
      downhill::Options().learning_rate(0.01).momentum(0.5).max_nonfinite(3).validate_every(100));
  int passes = 0;
  try {
    for (const auto& item : opt->iterate(train, &valid)) {
      (void)item;
      ++passes;
      // The updates of pass 1 did change the parameters.
      EXPECT_FALSE(torch::equal(problem.a.detach(), initial[0]));
    }
    FAIL() << "no DivergenceError";
  } catch (const downhill::DivergenceError& e) {
    EXPECT_EQ(e.skipped_updates(), 3);
    EXPECT_THAT(
        std::string(e.what()),
        AllOf(HasSubstr("RMSProp diverged"), HasSubstr("3 consecutive updates skipped"),
              HasSubstr("pass 2, batch 4"), HasSubstr("non-finite gradient for parameter 'a'"),
              HasSubstr("best parameters were restored")));
  }
  EXPECT_EQ(passes, 1);
  EXPECT_EQ(calls, 9);  // stopped at once
  expect_bit_identical(initial, problem.params().tensors(), "restored best");
  EXPECT_EQ(opt->update_count(), 6);
  EXPECT_EQ(log.warnings_with("update skipped"), 3) << log.text();
  EXPECT_THAT(log.text(), HasSubstr("RMSProp diverged: 3 consecutive updates skipped"));
}

TEST(NonFiniteLoop, ConsecutiveSkipsAreCountedAcrossPasses) {
  ScopedLogLevel quiet(spdlog::level::off);
  Problem problem;
  int calls = 0;
  auto train = scheduled_data({5, 6}, calls, 5);  // last of pass 1, first of pass 2
  auto valid = clean_validation();
  auto opt = downhill::build("sgd", problem.loss(), problem.params(),
                             downhill::Options().learning_rate(0.01).max_nonfinite(2));
  try {
    opt->minimize(train, &valid);
    FAIL() << "no DivergenceError";
  } catch (const downhill::DivergenceError& e) {
    EXPECT_EQ(e.skipped_updates(), 2);
    EXPECT_THAT(std::string(e.what()),
                AllOf(HasSubstr("2 consecutive updates skipped"), HasSubstr("pass 2, batch 1")));
  }
  EXPECT_EQ(calls, 6);  // stopped at the second bad batch, the first of pass 2
}

TEST(NonFiniteLoop, NonConsecutiveSkipsDoNotEndTheRun) {
  ScopedLogLevel quiet(spdlog::level::off);
  Problem problem;
  int calls = 0;
  std::set<int> every_other;
  for (int k = 2; k <= 40; k += 2) every_other.insert(k);
  auto train = scheduled_data(every_other, calls, 5);
  auto valid = clean_validation();
  auto opt = downhill::build(
      "adam", problem.loss(), problem.params(),
      downhill::Options().learning_rate(0.01).max_nonfinite(2).max_updates(8).patience(100));
  std::vector<double> skipped;
  EXPECT_NO_THROW({
    for (const auto& [training, validation] : opt->iterate(train, &valid)) {
      skipped.push_back(skipped_of(training));
    }
  });
  // Passes of 5 batches alternate 2 and 3 bad ones (2,4 | 6,8,10 | 12,14 | ...).
  EXPECT_EQ(skipped, (std::vector<double>{2, 3, 2, 3, 2, 3, 2, 3}));
  EXPECT_EQ(opt->update_count(), 20);
}

TEST(NonFiniteLoop, MaxNonfiniteOfOneStopsAtTheFirstSkip) {
  ScopedLogLevel quiet(spdlog::level::off);
  Problem problem;
  int calls = 0;
  auto train = scheduled_data({3}, calls, 5);
  auto valid = clean_validation();
  auto opt = downhill::build("sgd", problem.loss(), problem.params(),
                             downhill::Options().learning_rate(0.01).max_nonfinite(1));
  EXPECT_THROW(opt->minimize(train, &valid), downhill::DivergenceError);
  EXPECT_EQ(calls, 3);
}

}  // namespace
