// Parameters and state never receive a NaN or an infinity: settings whose arithmetic
// degenerates are refused when the optimizer is built (and by change_options), and an update
// whose values would not be finite changes nothing, returns false, warns and counts toward
// max_nonfinite, like a non-finite gradient (docs/guide.md, "Guarantees").
#include <downhill/detail/interval.h>
#include <downhill/downhill.h>
#include <downhill/rule.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "operator_count.h"
#include "test_support.h"

namespace {

using downhill::testing::LogCapture;
using downhill::testing::ScopedLogLevel;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr float kFloatMax = std::numeric_limits<float>::max();

torch::Tensor floats(std::vector<float> values) { return torch::tensor(values, torch::kFloat); }
torch::Tensor doubles(std::vector<double> values) { return torch::tensor(values, torch::kDouble); }

// Every tensor the optimizer holds (parameters, then state), cloned.
std::vector<torch::Tensor> everything(downhill::Optimizer& opt) {
  std::vector<torch::Tensor> out;
  for (const auto& t : opt.tensors()) out.push_back(t.detach().clone());
  for (const auto& [name, t] : opt.state()) out.push_back(t.detach().clone());
  return out;
}

void expect_same_bits(const std::vector<torch::Tensor>& before,
                      const std::vector<torch::Tensor>& after) {
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_TRUE(torch::equal(before[i], after[i]))
        << "tensor " << i << ": " << before[i] << " became " << after[i];
  }
}

bool all_finite(downhill::Optimizer& opt) {
  for (const auto& t : everything(opt)) {
    if (!torch::isfinite(t).all().item<bool>()) return false;
  }
  return true;
}

std::string refusal(const std::function<void()>& action) {
  try {
    action();
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "(nothing thrown)";
}

// The algorithms that divide by rms_regularizer.
const std::vector<std::string> kDividesByEpsilon = {"rmsprop", "adagrad", "adam", "esgd",
                                                    "adadelta"};

// ---- Settings whose arithmetic degenerates are refused ----

// The first example: ε = 0 with a gradient element of 1e-40, whose square is 0 in
// float32 (and whose root, for ADADELTA, divides 0 by 0). Refused for every algorithm that
// divides by ε, in both dtypes, naming the setting, its value and what is allowed.
TEST(DegenerateSettings, ZeroRegularizerIsRefusedWhereTheRuleDividesByIt) {
  for (const auto& algo : kDividesByEpsilon) {
    SCOPED_TRACE(algo);
    EXPECT_THAT(
        refusal([&] {
          downhill::build(algo, {{"x", floats({1})}}, downhill::Options().rms_regularizer(0));
        }),
        AllOf(HasSubstr("rms_regularizer = 0"), HasSubstr("is invalid for"),
              HasSubstr("divides by it"),
              HasSubstr("allowed: a number >= 1.17549e-38 for float32 parameters")));
    EXPECT_THAT(
        refusal([&] {
          downhill::build(algo, {{"x", doubles({1})}}, downhill::Options().rms_regularizer(0));
        }),
        AllOf(HasSubstr("rms_regularizer = 0"),
              HasSubstr("allowed: a number >= 2.22507e-308 for float64 parameters")));
  }
  // The others never divide by it: 0 stays allowed.
  for (const char* algo : {"sgd", "nag", "rprop"}) {
    EXPECT_NO_THROW(
        downhill::build(algo, {{"x", floats({1})}}, downhill::Options().rms_regularizer(0)))
        << algo;
  }
}

// 1e-40 is a float32 denormal (flushed to 0 where denormals are): refused for float32
// parameters, allowed for float64 ones, where it is a normal number.
TEST(DegenerateSettings, RegularizerBelowTheDtypesSmallestNormalIsRefused) {
  for (const auto& algo : kDividesByEpsilon) {
    SCOPED_TRACE(algo);
    EXPECT_THAT(
        refusal([&] {
          downhill::build(algo, {{"x", floats({1})}}, downhill::Options().rms_regularizer(1e-40));
        }),
        AllOf(HasSubstr("rms_regularizer = 1e-40"),
              HasSubstr("below the smallest normal float32")));
    EXPECT_NO_THROW(
        downhill::build(algo, {{"x", doubles({1})}}, downhill::Options().rms_regularizer(1e-40)));
    // The smallest normal float itself is allowed.
    EXPECT_NO_THROW(
        downhill::build(algo, {{"x", floats({1})}},
                        downhill::Options().rms_regularizer(std::numeric_limits<float>::min())));
  }
}

// The second example: β₁ = exp(−ln 2 / 1e17) = 1 − 6.9e-18, which rounds to 1 in
// double precision (its neighbour below 1 is 1 − 1.1e-16), so 1 − β₁ᵗ = 0 and Adam's bias
// correction divides by 0. A half-life of 1e15 gives 1 − 6.9e-16, below 1: allowed.
TEST(DegenerateSettings, AdamHalfLifeWhoseWeightRoundsToOneIsRefused) {
  for (const auto& x : {floats({1}), doubles({1})}) {
    EXPECT_THAT(refusal([&] {
                  downhill::build("adam", {{"x", x}}, downhill::Options().beta1_halflife(1e17));
                }),
                AllOf(HasSubstr("beta1_halflife = 1e+17"), HasSubstr("is invalid for Adam"),
                      HasSubstr("rounds to 1"), HasSubstr("allowed: a half-life below 1.2e16")));
    EXPECT_THAT(refusal([&] {
                  downhill::build("adam", {{"x", x}}, downhill::Options().beta2_halflife(3e16));
                }),
                HasSubstr("beta2_halflife = 3e+16"));
    EXPECT_NO_THROW(downhill::build("adam", {{"x", x}}, downhill::Options().beta1_halflife(1e15)));
  }
  // RMSProp's average has no bias correction: a weight of 1 only freezes it.
  EXPECT_NO_THROW(
      downhill::build("rmsprop", {{"x", floats({1})}}, downhill::Options().rms_halflife(1e17)));
}

// The third example: 1e39 is finite in double, infinite in float32 (largest
// 3.40282e38). Refused for float32 parameters, naming the parameter; allowed for float64.
TEST(DegenerateSettings, LearningRateInfiniteInTheParametersDtypeIsRefused) {
  for (const char* algo : {"sgd", "adam", "rmsprop", "esgd"}) {
    SCOPED_TRACE(algo);
    EXPECT_THAT(
        refusal([&] {
          downhill::build(algo, {{"w", floats({1})}}, downhill::Options().learning_rate(1e39));
        }),
        AllOf(HasSubstr("learning_rate = 1e+39"), HasSubstr("infinite"), HasSubstr("parameter 'w'"),
              HasSubstr("allowed: at most 3.40282e+38 for float32 parameters")));
    EXPECT_NO_THROW(
        downhill::build(algo, {{"w", doubles({1})}}, downhill::Options().learning_rate(1e39)));
    EXPECT_NO_THROW(
        downhill::build(algo, {{"w", floats({1})}}, downhill::Options().learning_rate(3e38)));
  }
  // One float32 parameter among float64 ones is enough, and is named.
  EXPECT_THAT(refusal([&] {
                downhill::build("sgd", {{"a", doubles({1})}, {"b", floats({1})}},
                                downhill::Options().learning_rate(1e39));
              }),
              HasSubstr("parameter 'b'"));
  // ADADELTA has no learning rate: it does not use it, so it does not refuse it.
  EXPECT_NO_THROW(
      downhill::build("adadelta", {{"w", floats({1})}}, downhill::Options().learning_rate(1e39)));
}

// Weight decay's constant is lr·λ: 1e-2 · 1e41 = 1e39 is infinite in float32.
TEST(DegenerateSettings, WeightDecayTimesLearningRateInfiniteInTheDtypeIsRefused) {
  EXPECT_THAT(refusal([&] {
                downhill::build("sgd", {{"w", floats({1})}},
                                downhill::Options().learning_rate(1e-2).weight_decay(1e41));
              }),
              HasSubstr("weight_decay = 1e+41"));
  EXPECT_NO_THROW(downhill::build("sgd", {{"w", floats({1})}},
                                  downhill::Options().learning_rate(1e-4).weight_decay(1e41)));
}

// RProp multiplies its steps by rprop_increase and limits them by rprop_max_step.
TEST(DegenerateSettings, RpropConstantsInfiniteInTheDtypeAreRefused) {
  EXPECT_THAT(
      refusal([&] {
        downhill::build("rprop", {{"w", floats({1})}}, downhill::Options().rprop_max_step(1e39));
      }),
      HasSubstr("rprop_max_step = 1e+39"));
  EXPECT_THAT(
      refusal([&] {
        downhill::build("rprop", {{"w", floats({1})}}, downhill::Options().rprop_increase(1e40));
      }),
      HasSubstr("rprop_increase = 1e+40"));
  EXPECT_NO_THROW(
      downhill::build("rprop", {{"w", doubles({1})}}, downhill::Options().rprop_max_step(1e39)));
}

// change_options validates as the build does, and changes nothing when it refuses.
TEST(DegenerateSettings, ChangeOptionsRefusesTheSameSettingsAndChangesNothing) {
  auto opt =
      downhill::build("adam", {{"w", floats({1, 2})}}, downhill::Options().learning_rate(0.1));
  EXPECT_THAT(
      refusal([&] { opt->change_options([](downhill::Options& o) { o.rms_regularizer(0); }); }),
      HasSubstr("rms_regularizer = 0"));
  EXPECT_THAT(
      refusal([&] { opt->change_options([](downhill::Options& o) { o.beta1_halflife(1e17); }); }),
      HasSubstr("beta1_halflife = 1e+17"));
  EXPECT_THAT(
      refusal([&] { opt->change_options([](downhill::Options& o) { o.learning_rate(1e39); }); }),
      HasSubstr("learning_rate = 1e+39"));
  EXPECT_EQ(opt->options().rms_regularizer(), 1e-8);
  EXPECT_EQ(opt->options().beta1_halflife(), 7.0);
  EXPECT_EQ(opt->options().learning_rate(), 0.1);
  EXPECT_TRUE(opt->apply({floats({1, 1})}));
}

// ---- Updates whose values would not be finite change nothing ----

// SGD: p − lr·g with p = 1, g = 3e38, lr = 10: 3e39 is beyond float32's 3.4e38, so the new
// value would be −inf. In float64: 1e308 · 10 overflows double the same way. Fused and
// reference, with and without momentum.
TEST(DegenerateUpdate, HugeGradientTimesLearningRateChangesNothing) {
  ScopedLogLevel quiet(spdlog::level::off);
  struct Case {
    torch::Tensor param, grad;
  };
  const std::vector<Case> cases = {{floats({1, 2}), floats({3e38f, 1})},
                                   {doubles({1, 2}), doubles({1e308, 1})}};
  for (const auto& c : cases) {
    for (const bool fused : {true, false}) {
      for (const double momentum : {0.0, 0.5}) {
        SCOPED_TRACE(std::string(c.param.dtype().name()) + (fused ? " fused" : " reference") +
                     " momentum " + std::to_string(momentum));
        const auto param = c.param.clone();
        auto opt =
            downhill::build("sgd", {{"x", param}},
                            downhill::Options().learning_rate(10).momentum(momentum).fused(fused));
        const auto before = everything(*opt);
        EXPECT_FALSE(opt->apply({c.grad}));
        expect_same_bits(before, everything(*opt));
        EXPECT_EQ(opt->update_count(), 0);
        // A gradient a hundredth as large is fine: 3e36 · 10 = 3e37 (float64: 1e307).
        const auto fine = c.grad / 100;
        EXPECT_TRUE(opt->apply({fine}));
        EXPECT_EQ(opt->update_count(), 1);
        EXPECT_TRUE(all_finite(*opt));
      }
    }
  }
}

// Adam: v ← β₂v + (1−β₂)g². With g = 1e21 in float32, (1−β₂)·g = 9.95e18 (β₂ from half-life
// 69: 1 − β₂ = 0.00995), times g = 9.95e39: infinite. u = m̂·lr/(sqrt(v̂) + ε) would be 0, so the
// parameter itself would stay finite, but v would not: nothing changes, the warning says so.
// In float64, g = 1e160 gives 1e318 the same way.
TEST(DegenerateUpdate, StateThatWouldOverflowChangesNothingAndWarns) {
  for (const auto& [param, grad] : std::vector<std::pair<torch::Tensor, torch::Tensor>>{
           {floats({0.5, -0.5}), floats({1e21f, 1})},
           {doubles({0.5, -0.5}), doubles({1e160, 1})}}) {
    for (const bool fused : {true, false}) {
      SCOPED_TRACE(std::string(param.dtype().name()) + (fused ? " fused" : " reference"));
      LogCapture log;
      auto opt = downhill::build("adam", {{"w", param.clone()}},
                                 downhill::Options().learning_rate(0.01).fused(fused));
      EXPECT_TRUE(opt->apply({grad / grad.abs().max()}));  // one normal update first
      const auto before = everything(*opt);
      EXPECT_FALSE(opt->apply({grad}));
      expect_same_bits(before, everything(*opt));
      EXPECT_EQ(opt->update_count(), 1);
      EXPECT_EQ(log.warnings_with("Adam: the update of parameter 'w' is not finite (its state "
                                  "'v'); update skipped"),
                1)
          << log.text();
    }
  }
}

// ESGD: D ← γD + (1−γ)(Hv)². With Hv = 1e21 in float32 and 1 − γ = 0.0483 (half-life 14),
// (1−γ)·Hv·Hv = 4.8e40: infinite; u = lr·g/(sqrt(D) + ε) would then be 0.
TEST(DegenerateUpdate, EsgdCurvatureThatWouldOverflowChangesNothing) {
  LogCapture log;
  auto opt = downhill::build("esgd", {{"w", floats({1, 2})}}, downhill::Options());
  const auto before = everything(*opt);
  EXPECT_FALSE(opt->apply({floats({1, 1})}, {floats({1e21f, 1})}));
  expect_same_bits(before, everything(*opt));
  EXPECT_EQ(log.warnings_with("(its state 'D')"), 1) << log.text();
  EXPECT_TRUE(opt->apply({floats({1, 1})}, {floats({1e3f, 1})}));
}

// ADAGRAD's sum of squares grows over several updates until it would overflow: with
// g = 1e19 in float32, each update adds g² ≈ 1e38, so G is 1e38, 2e38, 3e38, then would be
// 4e38 > 3.4e38. The first three updates apply (values computed here in float32, in the
// kernel's order), the fourth changes nothing, and a smaller gradient then applies again.
TEST(DegenerateUpdate, StateDrivenToOverflowOverSeveralUpdates) {
  ScopedLogLevel quiet(spdlog::level::off);
  for (const bool fused : {true, false}) {
    SCOPED_TRACE(fused ? "fused" : "reference");
    const float lr = 0.1f, eps = 1e-8f, g = 1e19f;
    auto opt = downhill::build("adagrad", {{"w", floats({5})}},
                               downhill::Options().learning_rate(0.1).fused(fused));
    float p = 5, sum = 0;
    for (int t = 1; t <= 3; ++t) {
      EXPECT_TRUE(opt->apply({floats({g})})) << "update " << t;
      sum = sum + g * g;
      p = p - g * lr / std::sqrt(sum + eps);
      EXPECT_EQ(opt->tensors()[0].item<float>(), p) << "update " << t;
      EXPECT_EQ(opt->state()[0].second.item<float>(), sum) << "update " << t;
    }
    ASSERT_TRUE(std::isinf(sum + g * g));  // the fourth would overflow
    const auto before = everything(*opt);
    EXPECT_FALSE(opt->apply({floats({g})}));
    expect_same_bits(before, everything(*opt));
    EXPECT_EQ(opt->update_count(), 3);
    EXPECT_TRUE(opt->apply({floats({1})}));
    EXPECT_EQ(opt->state()[0].second.item<float>(), sum + 1.0f);
  }
}

// Weight decay and a schedule: u·f(t) + lr·f(t)·λ·p. With p = 3e38, lr = 1, λ = 1 and
// g = 3e38 the update is 6e38 (infinite in float32); with a schedule of 1e30 on lr = 1e10,
// g = 1 gives u = 1e40.
TEST(DegenerateUpdate, WeightDecayAndScheduleOverflowsChangeNothing) {
  ScopedLogLevel quiet(spdlog::level::off);
  auto decayed = downhill::build("sgd", {{"w", floats({3e38f})}},
                                 downhill::Options().learning_rate(1).weight_decay(1));
  auto before = everything(*decayed);
  EXPECT_FALSE(decayed->apply({floats({3e38f})}));
  expect_same_bits(before, everything(*decayed));
  EXPECT_TRUE(decayed->apply({floats({-3e38f})}));  // −3e38 + 3e38 = 0: fine
  EXPECT_EQ(decayed->tensors()[0].item<float>(), 3e38f);

  auto scheduled = downhill::build(
      "sgd", {{"w", floats({1})}},
      downhill::Options().learning_rate(1e10).learning_rate_schedule([](int64_t) { return 1e30; }));
  before = everything(*scheduled);
  // lr·f(t) = 1e40 is infinite in float32: a setting no update can use, refused as the
  // learning rate 1e40 would be, before anything changes.
  EXPECT_THROW(scheduled->apply({floats({1})}), std::invalid_argument);
  expect_same_bits(before, everything(*scheduled));
}

// All or nothing across parameters: `a`'s update is fine, `b`'s would overflow (g² of 3e38 for
// the rules that square it, lr·g = 3e39 for SGD); neither changes, nor any state, and a later
// good update equals the first update of an optimizer that never saw the bad one.
TEST(DegenerateUpdate, OneParameterThatWouldOverflowStopsEveryParameter) {
  ScopedLogLevel quiet(spdlog::level::off);
  for (const char* algo : {"adam", "rmsprop", "adagrad", "sgd"}) {
    SCOPED_TRACE(algo);
    const auto options = downhill::Options().learning_rate(10).momentum(0.5);
    auto opt = downhill::build(algo, {{"a", floats({1, 2, 3})}, {"b", floats({4, 5})}}, options);
    auto fresh = downhill::build(algo, {{"a", floats({1, 2, 3})}, {"b", floats({4, 5})}}, options);
    const auto before = everything(*opt);
    EXPECT_FALSE(opt->apply({floats({1, 1, 1}), floats({1e30f, 3e38f})}));
    expect_same_bits(before, everything(*opt));
    const std::vector<torch::Tensor> good = {floats({0.5, -1, 2}), floats({1, -1})};
    EXPECT_TRUE(opt->apply(good));
    EXPECT_TRUE(fresh->apply(good));
    expect_same_bits(everything(*fresh), everything(*opt));
  }
}

// A parameter changed by the caller between updates is read again: the guard does not trust
// what it knew. p = 3.4e38 after a fill (float32's largest is 3.40282e38), g = −1e37, lr = 1:
// p + 1e37 = 3.5e38 overflows. The gradient alone is small enough for the guard's proof, so
// only the parameter's new range sends the update to the checked path.
TEST(DegenerateUpdate, ParameterChangedBetweenUpdatesIsJudgedByItsNewValues) {
  ScopedLogLevel quiet(spdlog::level::off);
  const auto w = floats({0, 0});
  auto opt = downhill::build("sgd", {{"w", w}}, downhill::Options().learning_rate(1));
  EXPECT_TRUE(opt->apply({floats({1, 1})}));
  EXPECT_TRUE(opt->apply({floats({1, 1})}));
  {
    torch::NoGradGuard no_grad;
    w.fill_(3.4e38);
  }
  EXPECT_FALSE(opt->apply({floats({-1e37f, 0})}));
  EXPECT_TRUE(torch::equal(w, floats({3.4e38f, 3.4e38f})));
  // State changed through state() is read again too: ADAGRAD's G set to 3.3e38 overflows
  // with g = 4e18 (g² = 1.6e37; 3.3e38 + 1.6e37 = 3.46e38).
  auto adagrad = downhill::build("adagrad", {{"w", floats({1})}}, downhill::Options());
  EXPECT_TRUE(adagrad->apply({floats({1})}));
  adagrad->state()[0].second.fill_(3.3e38);
  EXPECT_FALSE(adagrad->apply({floats({4e18f})}));
  EXPECT_EQ(adagrad->state()[0].second.item<float>(), 3.3e38f);
}

// G ← G + g²; u = lr·g / sqrt(G): a user's rule without ε, which divides 0 by 0 when the
// gradient is 0 at the first update, and by 0 when g² underflows.
template <typename V>
struct NoEpsilonRms {
  static constexpr const char* name = "NoEpsilonRms";
  static constexpr std::array<const char*, 1> state = {"G"};
  V lr;
  explicit NoEpsilonRms(const downhill::RuleContext& c) : lr(c.constant<V>(c.learning_rate())) {}
  V operator()(const V& g, std::array<V, 1>& s) const {
    auto& [sum_squares] = s;
    sum_squares = sum_squares + g * g;
    return lr * g / downhill::lanes::sqrt(sum_squares);
  }
};

void register_once() {
  static const bool registered = [] {
    downhill::register_rule<NoEpsilonRms>();
    return true;
  }();
  (void)registered;
}

// 0/0 from finite inputs (g = 0), and x/0 from an underflowing square (g = 1e-30: g² = 1e-60
// is 0 in float32): nothing changes. A normal gradient applies: p = 2, lr = 0.5, g = 1:
// G = 1, u = 0.5, p = 1.5 exactly; the guard could not prove it (G's range reaches 0), so
// it took the checked path, whose result is the same.
TEST(DegenerateUpdate, UserRuleDividingZeroByZeroChangesNothing) {
  ScopedLogLevel quiet(spdlog::level::off);
  register_once();
  for (const bool fused : {true, false}) {
    SCOPED_TRACE(fused ? "fused" : "reference");
    auto opt = downhill::build("noepsilonrms", {{"w", floats({2, 2})}},
                               downhill::Options().learning_rate(0.5).fused(fused));
    const auto before = everything(*opt);
    EXPECT_FALSE(opt->apply({floats({0, 1})}));
    expect_same_bits(before, everything(*opt));
    EXPECT_FALSE(opt->apply({floats({1e-30f, 1})}));
    expect_same_bits(before, everything(*opt));
    EXPECT_TRUE(opt->apply({floats({1, 1})}));
    EXPECT_TRUE(torch::equal(opt->tensors()[0], floats({1.5, 1.5})));
    EXPECT_TRUE(torch::equal(opt->state()[0].second, floats({1, 1})));
  }
}

// step() and the loop: a loss sum(x·c) with c = 3e38 has the finite gradient c at x = 0;
// SGD with lr = 10 would move x to −3e39. Each such update is skipped and counted; the third
// in a row (max_nonfinite 3) ends the run with the guard's reason.
TEST(DegenerateUpdate, StepAndTheLoopCountSkippedUpdatesTowardMaxNonfinite) {
  ScopedLogLevel quiet(spdlog::level::off);
  const auto x = torch::zeros({2}, torch::requires_grad());
  downhill::Loss loss = [x](const downhill::Batch& batch) -> downhill::Evaluation {
    return {(x * batch[0]).sum(), {}};
  };
  const downhill::Batch bad = {torch::full({2}, 3e38f)};
  auto opt = downhill::build("sgd", loss, {{"x", x}},
                             downhill::Options().learning_rate(10).max_nonfinite(3));
  opt->step(bad);
  EXPECT_EQ(opt->update_count(), 0);
  EXPECT_TRUE(torch::equal(x.detach(), torch::zeros({2})));

  auto train = downhill::Dataset([bad] { return bad; },
                                 downhill::DatasetOptions().iteration_size(5).name("train"));
  try {
    opt->minimize(train);
    FAIL() << "no DivergenceError";
  } catch (const downhill::DivergenceError& e) {
    EXPECT_EQ(e.skipped_updates(), 3);
    EXPECT_THAT(std::string(e.what()),
                AllOf(HasSubstr("3 consecutive updates skipped"),
                      HasSubstr("the update of parameter 'x' is not finite (its new value)")));
  }
  EXPECT_EQ(opt->update_count(), 0);
  EXPECT_TRUE(torch::equal(x.detach(), torch::zeros({2})));
}

// ---- The common case is one pass ----

// Ordinary updates are proven finite from the ranges the guard knows, and run in place: one
// pass of the fused kernel, no ATen operator, over many updates (the ranges it carries from
// one update to the next stay tight enough). Not ADADELTA: its update's bound grows by a
// factor at each update (the range of X feeds the next update's), so every few updates it
// takes the checked path, which resets the ranges (docs/architecture.md, "The guard"). A
// gradient the ranges cannot clear (ADAGRAD, g = 1e19: g² passes max/16 of float32) takes the
// checked path, which runs operators.
TEST(GuardPath, OrdinaryUpdatesRunInPlaceWithoutTensorOperators) {
  for (const char* algo : {"sgd", "nag", "rprop", "rmsprop", "adagrad", "esgd", "adam"}) {
    for (const double momentum : {0.0, 0.9}) {
      SCOPED_TRACE(std::string(algo) + " momentum " + std::to_string(momentum));
      torch::manual_seed(3);
      auto opt = downhill::build(algo, {{"w", torch::randn({1000})}},
                                 downhill::Options().learning_rate(1e-3).momentum(momentum));
      opt->apply({torch::randn({1000})}, {torch::randn({1000})});  // reads the ranges once
      int64_t operators = 0;
      for (int t = 0; t < 200; ++t) {
        const auto grad = torch::randn({1000});
        const auto hv = torch::randn({1000});  // ESGD's; the others ignore it
        operators += downhill::testing::aten_operators_in([&] { opt->apply({grad}, {hv}); });
      }
      EXPECT_EQ(operators, 0);
    }
  }
  ScopedLogLevel quiet(spdlog::level::off);
  auto opt = downhill::build("adagrad", {{"w", floats({1})}}, downhill::Options());
  opt->apply({floats({1})});
  const auto grad = floats({1e19f});
  EXPECT_GT(downhill::testing::aten_operators_in([&] { EXPECT_TRUE(opt->apply({grad})); }), 0);
}

// ---- The interval arithmetic the guard runs the chain on ----

using FloatRange = downhill::detail::Interval<float>;
using DoubleRange = downhill::detail::Interval<double>;

TEST(Interval, ConstantsRoundToTheDtype) {
  EXPECT_FALSE(FloatRange(1e39).ok());  // infinite in float32
  EXPECT_TRUE(DoubleRange(1e39).ok());
  EXPECT_EQ(FloatRange(0.1).lo(), static_cast<double>(0.1f));
  EXPECT_EQ(FloatRange(0.1).hi(), static_cast<double>(0.1f));
}

TEST(Interval, DivisionByARangeHoldingZeroIsNotProven) {
  EXPECT_FALSE((FloatRange::exact(1, 2) / FloatRange::exact(-1, 1)).ok());
  EXPECT_FALSE((FloatRange::exact(1, 2) / FloatRange::exact(0, 1)).ok());
  const auto q = FloatRange::exact(1, 2) / FloatRange::exact(0.5, 1);
  ASSERT_TRUE(q.ok());
  EXPECT_LE(q.lo(), 1.0);  // holds [1, 4], slightly widened
  EXPECT_GE(q.hi(), 4.0);
  EXPECT_LT(q.hi(), 4.0001);
}

TEST(Interval, SquareRootOfANegativeBoundIsNotProven) {
  EXPECT_FALSE(downhill::lanes::sqrt(FloatRange::exact(-1, 4)).ok());
  const auto root = downhill::lanes::sqrt(FloatRange::exact(0, 4));
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root.lo(), 0.0);  // 0 stays 0: rounding keeps the sign
  EXPECT_GE(root.hi(), 2.0);
}

// Beyond max/16 of the dtype is not provably finite: 1e37·10 in float32, fine in float64.
TEST(Interval, BoundsNearTheDtypesLargestValueAreNotProven) {
  EXPECT_FALSE((FloatRange::exact(1e37, 1e37) * FloatRange(10)).ok());
  EXPECT_TRUE((DoubleRange::exact(1e37, 1e37) * DoubleRange(10)).ok());
  EXPECT_TRUE((FloatRange::exact(1e35, 1e35) * FloatRange(10)).ok());
}

// A decided comparison keeps only the chosen value: the other may be bad, as the kernel
// computes but discards it.
TEST(Interval, DecidedSelectIgnoresTheOtherValue) {
  const auto positive = FloatRange::exact(1, 2);
  const auto zero = FloatRange(0);
  const auto chosen = downhill::lanes::select(positive > zero, positive, FloatRange::bad());
  EXPECT_TRUE(chosen.ok());
  EXPECT_FALSE(
      downhill::lanes::select(FloatRange::exact(-1, 1) > zero, positive, FloatRange::bad()).ok());
}

}  // namespace
