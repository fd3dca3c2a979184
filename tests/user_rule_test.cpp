// Algorithms a user writes as rules (downhill/rule.h) with the public headers alone: Lion, with
// settings of its own, and smaller rules without settings, with Hessian-vector products, and
// with initial state values. Registered by name, they run through the same update chain as the
// built-in algorithms; Lion's trajectory is held to the formula worked out here in plain double
// arithmetic, and its fused kernel to its tensor reference, bit for bit.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <ostream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "lion_rule.h"  // examples/: the rule the guide shows
#include "operator_count.h"

namespace {

// SignSGD: u = lr·sign(g). No state, no settings.
template <typename V>
struct SignSgd {
  static constexpr const char* name = "SignSGD";
  static constexpr std::array<const char*, 0> state = {};

  V lr;
  explicit SignSgd(const downhill::RuleContext& c) : lr(c.constant<V>(c.learning_rate())) {}

  V operator()(const V& g, std::array<V, 0>& /*state*/) const {
    return lr * downhill::lanes::sign(g);
  }
};

// Takes the Hessian-vector product: u = lr·g / (|Hr| + 1).
template <typename V>
struct CurvatureScaled {
  static constexpr const char* name = "CurvatureScaled";
  static constexpr std::array<const char*, 0> state = {};

  V lr, one;
  explicit CurvatureScaled(const downhill::RuleContext& c)
      : lr(c.constant<V>(c.learning_rate())), one(c.constant<V>(1.0)) {}

  V operator()(const V& g, const V& hv, std::array<V, 0>& /*state*/) const {
    return lr * g / (downhill::lanes::abs(hv) + one);
  }
};

// State that does not start at zero: G starts at 1 and the scale at the learning rate.
// G ← G + g²; u = scale·g / sqrt(G); scale ← scale / 2.
template <typename V>
struct HalvingAdagrad {
  static constexpr const char* name = "HalvingAdagrad";
  static constexpr std::array<const char*, 2> state = {"G", "scale"};
  static double initial_value(size_t slot, const downhill::Options& options) {
    return slot == 0 ? 1.0 : options.learning_rate();
  }

  V half;
  explicit HalvingAdagrad(const downhill::RuleContext& c) : half(c.constant<V>(0.5)) {}

  V operator()(const V& g, std::array<V, 2>& s) const {
    auto& [sum_squares, scale] = s;
    sum_squares = sum_squares + g * g;
    const V u = scale * g / downhill::lanes::sqrt(sum_squares);
    scale = scale * half;
    return u;
  }
};

// The registry is process-wide and refuses a name twice, so the rules are registered once per
// process, however often the tests run (--gtest_repeat).
void register_rules_once() {
  static const bool registered = [] {
    // "lion" is built in: this rule of the guide's example is registered under a name of its own.
    downhill::register_rule<Lion>("my_lion");
    downhill::register_rule<Lion>("lion_fast", {0.5, 0.8});
    downhill::register_rule<SignSgd>();
    downhill::register_rule<CurvatureScaled>();
    downhill::register_rule<HalvingAdagrad>();
    return true;
  }();
  (void)registered;
}

torch::Tensor tensor_of(const std::vector<double>& values, torch::ScalarType dtype,
                        std::vector<int64_t> shape) {
  return torch::tensor(values, torch::TensorOptions().dtype(torch::kDouble))
      .to(dtype)
      .reshape(shape)
      .contiguous();
}

std::vector<double> values_of(const torch::Tensor& tensor) {
  const auto flat = tensor.detach().to(torch::kDouble).flatten().contiguous();
  return std::vector<double>(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
}

// The value a tensor of `dtype` holds for `x`, so that the model sees what the library sees.
double representable(double x, torch::ScalarType dtype) {
  return dtype == torch::kFloat ? static_cast<double>(static_cast<float>(x)) : x;
}

torch::Tensor state_named(downhill::Optimizer& opt, const std::string& name) {
  for (const auto& [state_name, tensor] : opt.state()) {
    if (state_name == name) return tensor;
  }
  ADD_FAILURE() << "state() has no " << name;
  return torch::Tensor();
}

void expect_values(const torch::Tensor& actual, const std::vector<double>& expected,
                   double tolerance, const std::string& what) {
  const auto values = values_of(actual);
  ASSERT_EQ(values.size(), expected.size()) << what;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(values[i], expected[i], tolerance * std::max(1.0, std::abs(expected[i])))
        << what << " element " << i;
  }
}

std::vector<std::string> names_of(const downhill::NamedTensors& tensors) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : tensors) names.push_back(name);
  return names;
}

TEST(UserRuleRegistration, RegisterRuleMakesTheRuleBuildable) {
  register_rules_once();
  const auto names = downhill::algorithm_names();
  for (const std::string name : {"my_lion", "lion_fast", "signsgd"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  }
  const downhill::Params params = {{"x", torch::zeros({2})}};
  EXPECT_EQ(downhill::build("My_Lion", params)->name(), "Lion");
  // The display name is the rule's, whatever name it was registered under.
  EXPECT_EQ(downhill::build("LION_FAST", params)->name(), "Lion");
  EXPECT_EQ(downhill::build("signSGD", params)->name(), "SignSGD");
}

TEST(UserRuleRegistration, ANameIsRegisteredOnlyOnce) {
  register_rules_once();
  EXPECT_THROW(downhill::register_rule<Lion>("my_lion"), std::invalid_argument);
  EXPECT_THROW(downhill::register_rule<Lion>(), std::invalid_argument);  // the built-in "lion"
  EXPECT_THROW(downhill::register_rule<Lion>("LION_fast", {0.7, 0.9}), std::invalid_argument);
  EXPECT_THROW(downhill::register_rule<SignSgd>("Lion"), std::invalid_argument);
  // A built-in name is taken too.
  EXPECT_THROW(downhill::register_rule<SignSgd>("sgd"), std::invalid_argument);
}

// ---- Lion's trajectory against the formula ----

constexpr int kUpdates = 25;
// A power of two, and initial values of few binary digits, so that steps of ±lr leave the
// parameters exact even in float: the float tolerance below then only covers momentum.
constexpr double kLearningRate = 1.0 / 128;
const std::vector<double> kInitialA = {0.25, -0.375, 0.5};             // float, shape {3}
const std::vector<double> kInitialB = {-0.125, 0.375, 0.0625, -0.25};  // double, shape {2, 2}

// Element e of parameter k's gradient (k = 0 for a, 1 for b) in update t (from 0): values in
// [−1.2, 1.8] whose signs change from update to update. They keep β₁m + (1−β₁)g at least 1e-3
// away from 0 for every case below (checked there), so that its sign is the same whether
// computed in float or in double.
double gradient(int k, int t, int e) { return 1.5 * std::sin(1.3 * t + 2.1 * e + 2.3 * k) + 0.3; }

std::vector<double> gradients(int k, int t, int elements, torch::ScalarType dtype) {
  std::vector<double> out;
  for (int e = 0; e < elements; ++e) out.push_back(representable(gradient(k, t, e), dtype));
  return out;
}

double sign(double x) { return static_cast<double>((x > 0) - (x < 0)); }

// Lion on one parameter in double precision, following the formula and docs/guide.md's
// clipping and momentum: g ← clamp(g, −c, c) when c > 0; u = lr·sign(β₁m + (1−β₁)g);
// m ← β₂m + (1−β₂)g; then p ← p − u without momentum, or w ← μw − u, p ← p + w with it.
struct LionModel {
  double beta1, beta2, momentum, clip;
  std::vector<double> p, m, w;
  double nearest_zero = std::numeric_limits<double>::infinity();  // smallest |β₁m + (1−β₁)g|

  LionModel(double beta1, double beta2, double momentum, double clip, std::vector<double> initial)
      : beta1(beta1),
        beta2(beta2),
        momentum(momentum),
        clip(clip),
        p(std::move(initial)),
        m(p.size(), 0.0),
        w(p.size(), 0.0) {}

  void update(const std::vector<double>& grads) {
    for (size_t e = 0; e < p.size(); ++e) {
      const double g = clip > 0 ? std::clamp(grads[e], -clip, clip) : grads[e];
      const double direction = beta1 * m[e] + (1 - beta1) * g;
      nearest_zero = std::min(nearest_zero, std::abs(direction));
      const double u = kLearningRate * sign(direction);
      m[e] = beta2 * m[e] + (1 - beta2) * g;
      if (momentum == 0) {
        p[e] -= u;
      } else {
        w[e] = momentum * w[e] - u;
        p[e] += w[e];
      }
    }
  }
};

struct LionCase {
  const char* label;  // for the test name
  const char* algo;
  double beta1, beta2;  // the settings `algo` was registered with
  double momentum, clip;
};

std::ostream& operator<<(std::ostream& out, const LionCase& c) { return out << c.label; }

const LionCase kPlain = {"Defaults", "my_lion", 0.9, 0.99, 0.0, 0.0};
const LionCase kMomentumClip = {"MomentumClipElem", "my_lion", 0.9, 0.99, 0.5, 0.75};
const LionCase kOwnSettings = {"OwnSettings", "lion_fast", 0.5, 0.8, 0.0, 0.0};
// The built-in "lion", with the paper's β₁ = 0.9 and β₂ = 0.99 as its defaults.
const LionCase kBuiltIn = {"BuiltIn", "lion", 0.9, 0.99, 0.0, 0.0};
const LionCase kBuiltInMomentumClip = {"BuiltInMomentumClipElem", "lion", 0.9, 0.99, 0.5, 0.75};

// Both parameters' models after `updates` updates of case `c`.
std::pair<LionModel, LionModel> lion_models(const LionCase& c, int updates) {
  LionModel a(c.beta1, c.beta2, c.momentum, c.clip, kInitialA);
  LionModel b(c.beta1, c.beta2, c.momentum, c.clip, kInitialB);
  for (int t = 0; t < updates; ++t) {
    a.update(gradients(0, t, 3, torch::kFloat));
    b.update(gradients(1, t, 4, torch::kDouble));
  }
  return {a, b};
}

// The model itself: its first update worked out by hand, and the settings and clipping each
// changing the trajectory, so that a library that ignored them could not agree with the model.
TEST(LionModelCheck, FirstUpdateByHandAndEveryCaseDiffers) {
  // m = 0, so u = lr·sign(g): a's gradients are 1.5·sin(2.1e) + 0.3 = 0.3, 1.59, −1.01.
  const auto [a, b] = lion_models(kPlain, 1);
  EXPECT_EQ(a.p, (std::vector<double>{0.25 - kLearningRate, -0.375 - kLearningRate,
                                      0.5 + kLearningRate}));
  const auto plain = lion_models(kPlain, kUpdates);
  const auto own = lion_models(kOwnSettings, kUpdates);
  EXPECT_TRUE(plain.first.p != own.first.p || plain.second.p != own.second.p);
  auto unclipped = kMomentumClip;
  unclipped.clip = 0;
  const auto clipped = lion_models(kMomentumClip, kUpdates);
  const auto not_clipped = lion_models(unclipped, kUpdates);
  EXPECT_TRUE(clipped.first.p != not_clipped.first.p || clipped.second.p != not_clipped.second.p);
}

using TrajectoryCase = std::tuple<LionCase, bool>;

std::string trajectory_name(const testing::TestParamInfo<TrajectoryCase>& info) {
  const auto& [c, fused] = info.param;
  return std::string(c.label) + (fused ? "_fused" : "_reference");
}

class LionTrajectory : public testing::TestWithParam<TrajectoryCase> {};

TEST_P(LionTrajectory, FollowsTheFormulaInDoublePrecision) {
  register_rules_once();
  const auto& [c, fused] = GetParam();
  auto a = tensor_of(kInitialA, torch::kFloat, {3});
  auto b = tensor_of(kInitialB, torch::kDouble, {2, 2});
  auto opt = downhill::build(c.algo, {{"a", a}, {"b", b}},
                             downhill::Options()
                                 .learning_rate(kLearningRate)
                                 .momentum(c.momentum)
                                 .max_gradient_elem(c.clip)
                                 .fused(fused));
  LionModel model_a(c.beta1, c.beta2, c.momentum, c.clip, kInitialA);
  LionModel model_b(c.beta1, c.beta2, c.momentum, c.clip, kInitialB);
  // Float: each update rounds p (and w) to 24 bits, about 3e-8 for |p| < 1, at most 25 times.
  const double float_tolerance = 1e-6, double_tolerance = 1e-12;
  for (int t = 0; t < kUpdates; ++t) {
    const auto grads_a = gradients(0, t, 3, torch::kFloat);
    const auto grads_b = gradients(1, t, 4, torch::kDouble);
    ASSERT_TRUE(opt->apply(
        {tensor_of(grads_a, torch::kFloat, {3}), tensor_of(grads_b, torch::kDouble, {2, 2})}));
    model_a.update(grads_a);
    model_b.update(grads_b);
    const std::string after = " after update " + std::to_string(t + 1);
    expect_values(a, model_a.p, float_tolerance, "a" + after);
    expect_values(b, model_b.p, double_tolerance, "b" + after);
  }
  // m sums rounded products with float constants β₂ and 1−β₂; a few float roundings per update.
  expect_values(state_named(*opt, "a.m"), model_a.m, 1e-5, "a.m");
  expect_values(state_named(*opt, "b.m"), model_b.m, double_tolerance, "b.m");
  if (c.momentum > 0) {
    expect_values(state_named(*opt, "a.velocity"), model_a.w, float_tolerance, "a.velocity");
    expect_values(state_named(*opt, "b.velocity"), model_b.w, double_tolerance, "b.velocity");
  }
  // The signs were never in doubt: float rounding (about 1e-7 here) could not flip them.
  EXPECT_GT(model_a.nearest_zero, 1e-3);
  EXPECT_GT(model_b.nearest_zero, 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Lion, LionTrajectory,
                         testing::Combine(testing::Values(kPlain, kMomentumClip, kOwnSettings,
                                                          kBuiltIn, kBuiltInMomentumClip),
                                          testing::Bool()),
                         trajectory_name);

// ---- The fused kernel and the tensor reference ----

downhill::Options plain_options() { return downhill::Options().learning_rate(0.01); }
downhill::Options momentum_clip_options() {
  return downhill::Options().learning_rate(0.01).momentum(0.5).max_gradient_elem(0.75);
}

// Parameters and state after 30 updates of random gradients, on a float and a double parameter,
// the float one large enough for the kernel's vectorized loop.
std::vector<torch::Tensor> random_trajectory(const std::string& algo, downhill::Options options) {
  auto generator = at::detail::createCPUGenerator(/*seed_val=*/77);
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  auto x = at::randn({10000}, generator, f64).to(torch::kFloat);
  auto y = at::randn({3, 5}, generator, f64);
  auto opt = downhill::build(algo, {{"x", x}, {"y", y}}, options);
  for (int t = 0; t < 30; ++t) {
    const auto gx = at::randn({10000}, generator, f64).to(torch::kFloat);
    const auto gy = at::randn({3, 5}, generator, f64);
    EXPECT_TRUE(opt->apply({gx, gy}, {gx, gy}));
  }
  std::vector<torch::Tensor> out = {x, y};
  for (const auto& [name, tensor] : opt->state()) out.push_back(tensor.clone());
  return out;
}

TEST(UserRuleFused, FusedAndReferenceAgreeBitForBit) {
  register_rules_once();
  for (const char* algo :
       {"my_lion", "lion_fast", "signsgd", "curvaturescaled", "halvingadagrad"}) {
    for (const bool momentum : {false, true}) {
      SCOPED_TRACE(std::string(algo) + (momentum ? " with momentum and clipping" : ""));
      const auto options = momentum ? momentum_clip_options() : plain_options();
      const auto fused = random_trajectory(algo, downhill::Options(options).fused(true));
      const auto reference = random_trajectory(algo, downhill::Options(options).fused(false));
      ASSERT_EQ(fused.size(), reference.size());
      for (size_t i = 0; i < fused.size(); ++i) {
        EXPECT_TRUE(torch::equal(fused[i], reference[i])) << "tensor " << i;
      }
    }
  }
}

// The ATen operators one update (after the first, which allocates the state) runs.
int64_t operators_per_update(const std::string& algo, const downhill::Options& options,
                             const torch::Tensor& param) {
  auto opt = downhill::build(algo, {{"x", param}}, options);
  const auto grad = torch::randn_like(param);
  opt->apply({grad});
  return downhill::testing::aten_operators_in([&] { opt->apply({grad}); });
}

// A user's rule gets the fused kernel: an update of a contiguous float CPU parameter is one
// pass over its memory and calls no ATen operator, while fused(false) runs the tensor ops.
TEST(UserRuleFused, FusedPathRunsNoTensorOperators) {
  register_rules_once();
  for (const char* algo : {"my_lion", "signsgd"}) {
    for (const bool momentum : {false, true}) {
      SCOPED_TRACE(std::string(algo) + (momentum ? " with momentum and clipping" : ""));
      const auto options = momentum ? momentum_clip_options() : plain_options();
      const auto values = torch::randn({1000}, torch::TensorOptions().dtype(torch::kFloat));
      EXPECT_EQ(operators_per_update(algo, downhill::Options(options).fused(true), values.clone()),
                0);
      EXPECT_GT(operators_per_update(algo, downhill::Options(options).fused(false), values.clone()),
                0);
    }
  }
}

// ---- State, Hessian-vector products, initial values ----

TEST(UserRuleState, StateIsNamedParamDotSlot) {
  register_rules_once();
  const downhill::Params params = {{"a", torch::zeros({3})}, {"b", torch::zeros({2, 2})}};
  auto lion = downhill::build("my_lion", params);
  EXPECT_EQ(names_of(lion->state()), (std::vector<std::string>{"a.m", "b.m"}));
  auto with_momentum = downhill::build("my_lion", params, downhill::Options().momentum(0.5));
  EXPECT_EQ(names_of(with_momentum->state()),
            (std::vector<std::string>{"a.m", "a.velocity", "b.m", "b.velocity"}));
  EXPECT_TRUE(downhill::build("signsgd", params)->state().empty());
}

TEST(UserRuleHessian, ARuleTakingHessianVectorProductsNeedsThem) {
  register_rules_once();
  for (const bool fused : {true, false}) {
    SCOPED_TRACE(fused ? "fused" : "reference");
    auto x = tensor_of({0.5, -1.0}, torch::kDouble, {2});
    auto opt = downhill::build("curvaturescaled", {{"x", x}},
                               downhill::Options().learning_rate(0.5).fused(fused));
    EXPECT_TRUE(opt->needs_hessian_vector_products());
    const auto g = tensor_of({1.0, -2.0}, torch::kDouble, {2});
    EXPECT_THROW(opt->apply({g}), std::invalid_argument);
    expect_values(x, {0.5, -1.0}, 0.0, "x after the refused update");
    // u = 0.5·g / (|Hr| + 1) = {0.5·1/2, 0.5·(−2)/4} = {0.25, −0.25}.
    ASSERT_TRUE(opt->apply({g}, {tensor_of({-1.0, 3.0}, torch::kDouble, {2})}));
    expect_values(x, {0.25, -0.75}, 0.0, "x");
  }
  const downhill::Params params = {{"x", torch::zeros({2})}};
  EXPECT_FALSE(downhill::build("my_lion", params)->needs_hessian_vector_products());
  EXPECT_FALSE(downhill::build("signsgd", params)->needs_hessian_vector_products());
}

TEST(UserRuleState, InitialValueSetsTheStartingState) {
  register_rules_once();
  for (const bool fused : {true, false}) {
    SCOPED_TRACE(fused ? "fused" : "reference");
    auto x = tensor_of({0.5, -0.5}, torch::kDouble, {2});
    auto opt = downhill::build("halvingadagrad", {{"x", x}},
                               downhill::Options().learning_rate(0.2).fused(fused));
    expect_values(state_named(*opt, "x.G"), {1.0, 1.0}, 0.0, "x.G before");
    expect_values(state_named(*opt, "x.scale"), {0.2, 0.2}, 0.0, "x.scale before");
    // g = {0.75, −1}: G = 1 + g² = {1.5625, 2}; u = 0.2·g / sqrt(G) = {0.12, −0.2/√2};
    // the scale halves to 0.1.
    ASSERT_TRUE(opt->apply({tensor_of({0.75, -1.0}, torch::kDouble, {2})}));
    expect_values(state_named(*opt, "x.G"), {1.5625, 2.0}, 1e-15, "x.G after");
    expect_values(state_named(*opt, "x.scale"), {0.1, 0.1}, 1e-15, "x.scale after");
    expect_values(x, {0.5 - 0.12, -0.5 + 0.2 / std::sqrt(2.0)}, 1e-15, "x");
  }
  // Without initial_value, state starts at zero.
  auto lion = downhill::build("my_lion", {{"x", torch::ones({2})}});
  expect_values(state_named(*lion, "x.m"), {0.0, 0.0}, 0.0, "x.m");
}

}  // namespace
