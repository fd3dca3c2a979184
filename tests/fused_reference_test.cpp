// The fused single-pass CPU kernels against the tensor-op reference: 200 updates of
// random gradients on 100 000-element parameters, for every built-in algorithm and option set.
// Both paths run the same rule body (downhill/rule.h), so they must agree bit for bit: the
// comparisons below allow no difference at all.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "operator_count.h"

namespace {

constexpr int64_t kElements = 100000;
constexpr int kUpdates = 200;
// The fallback only needs to show the same numbers on another path: smaller runs.
constexpr int64_t kFallbackElements = 10000;
constexpr int kFallbackUpdates = 50;
// Distinct random gradient tensors, reused with a per-update random scale, to keep
// the gradient generation cheap next to the updates it feeds.
constexpr int kGradientPool = 8;

enum class OptionSet { kPlain, kMomentumClipElem, kNesterovClipNorm };

downhill::Options make_options(OptionSet set) {
  // rms_halflife 5 and a large rprop_max_step keep the state moving over 200 updates.
  auto options = downhill::Options()
                     .learning_rate(0.01)
                     .rms_halflife(5)
                     .rprop_increase(1.2)
                     .rprop_decrease(0.5)
                     .rprop_min_step(1e-4)
                     .rprop_max_step(0.05);
  switch (set) {
    case OptionSet::kPlain:
      break;
    case OptionSet::kMomentumClipElem:
      options.momentum(0.9).max_gradient_elem(1.5);
      break;
    case OptionSet::kNesterovClipNorm:
      // The gradients' norm is about sqrt(1e5) ≈ 316, so norm clipping is active.
      options.momentum(0.9).nesterov(true).max_gradient_norm(100);
      break;
  }
  return options;
}

// Exact equality: the fused kernel and the reference run the same rule body on the same
// constants, each rounded once to the parameter's dtype (RuleContext::constant), and the kernel
// is compiled without fused multiply-adds, so every operation rounds alike on both paths.
constexpr double kExact = 0.0;

double relative_difference(const torch::Tensor& actual, const torch::Tensor& expected) {
  const auto a = actual.to(torch::kDouble);
  const auto b = expected.to(torch::kDouble);
  const double scale = std::max(b.abs().max().item<double>(), 1e-300);
  return (a - b).abs().max().item<double>() / scale;
}

struct Trajectory {
  torch::Tensor initial;
  torch::Tensor param;
  downhill::NamedTensors state;
};

// Runs `updates` updates of `algo` on `elements` elements from a fixed initial point with fixed
// random gradients (and Hessian-vector products for ESGD). `make_param` turns the initial values
// into the parameter handed to the optimizer (contiguous or not).
template <typename MakeParam>
Trajectory run(const std::string& algo, downhill::Options options, torch::ScalarType dtype,
               MakeParam&& make_param, int64_t elements = kElements, int updates = kUpdates) {
  auto generator = at::detail::createCPUGenerator(/*seed_val=*/1234);
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);
  const auto initial = at::randn({elements}, generator, f64).to(dtype);
  std::vector<torch::Tensor> grads, hvs;
  for (int k = 0; k < kGradientPool; ++k) {
    grads.push_back(at::randn({elements}, generator, f64).to(dtype));
    hvs.push_back(at::randn({elements}, generator, f64).to(dtype));
  }
  const auto scales = at::randn({updates}, generator, f64);

  torch::Tensor param = make_param(initial);
  auto opt = downhill::build(algo, {{"x", param}}, options);
  for (int t = 0; t < updates; ++t) {
    // A random scale changes magnitudes and flips signs between updates.
    const double scale = scales[t].item<double>();
    const auto grad = grads[t % kGradientPool] * scale;
    const auto hv = hvs[(t * 3) % kGradientPool];
    EXPECT_TRUE(opt->apply({grad}, {hv}));
  }
  Trajectory out{initial, param.detach().clone(), {}};
  for (const auto& [name, tensor] : opt->state()) out.state.emplace_back(name, tensor.clone());
  return out;
}

torch::Tensor contiguous_param(const torch::Tensor& initial) { return initial.clone(); }

// Every other element of a buffer twice as long: a non-contiguous view.
torch::Tensor strided_param(const torch::Tensor& initial) {
  const int64_t elements = initial.numel();
  auto buffer = torch::zeros({2 * elements}, initial.options());
  auto view = buffer.slice(0, 0, 2 * elements, 2);
  view.copy_(initial);
  return view;
}

void expect_same_trajectory(const Trajectory& actual, const Trajectory& expected,
                            double tolerance) {
  EXPECT_LE(relative_difference(actual.param, expected.param), tolerance) << "parameter";
  ASSERT_EQ(actual.state.size(), expected.state.size());
  for (size_t i = 0; i < actual.state.size(); ++i) {
    ASSERT_EQ(actual.state[i].first, expected.state[i].first);
    EXPECT_LE(relative_difference(actual.state[i].second, expected.state[i].second), tolerance)
        << "state " << expected.state[i].first;
  }
}

using FusedCase = std::tuple<std::string, OptionSet, torch::ScalarType>;

std::string case_name(const testing::TestParamInfo<FusedCase>& info) {
  const auto& [algo, set, dtype] = info.param;
  const char* set_name = set == OptionSet::kPlain              ? "Plain"
                         : set == OptionSet::kMomentumClipElem ? "MomentumClipElem"
                                                               : "NesterovClipNorm";
  return algo + "_" + set_name + "_" + (dtype == torch::kFloat ? "float" : "double");
}

class FusedVersusReference : public testing::TestWithParam<FusedCase> {};

TEST_P(FusedVersusReference, TwoHundredUpdatesAgree) {
  const auto& [algo, set, dtype] = GetParam();
  const auto fused = run(algo, make_options(set).fused(true), dtype, contiguous_param);
  const auto reference = run(algo, make_options(set).fused(false), dtype, contiguous_param);
  expect_same_trajectory(fused, reference, kExact);
  // The parameters moved, so the comparison is not of two untouched copies.
  EXPECT_GT(relative_difference(reference.param, reference.initial), 1e-3);
}

// Every algorithm in both dtypes without options; each option set in one dtype per
// algorithm, alternating, so that every (option set, dtype) pair is covered by half of the
// algorithms while the reference path's runtime stays modest.
std::vector<FusedCase> fused_cases() {
  const auto algorithms = downhill::builtin_algorithm_names();
  std::vector<FusedCase> cases;
  for (size_t a = 0; a < algorithms.size(); ++a) {
    const auto first = a % 2 == 0 ? torch::kFloat : torch::kDouble;
    const auto second = a % 2 == 0 ? torch::kDouble : torch::kFloat;
    cases.emplace_back(algorithms[a], OptionSet::kPlain, torch::kFloat);
    cases.emplace_back(algorithms[a], OptionSet::kPlain, torch::kDouble);
    cases.emplace_back(algorithms[a], OptionSet::kMomentumClipElem, first);
    cases.emplace_back(algorithms[a], OptionSet::kNesterovClipNorm, second);
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllAlgorithms, FusedVersusReference, testing::ValuesIn(fused_cases()),
                         case_name);

// A parameter that is not contiguous cannot take the fused path; with fused(true) it falls
// back to the reference and gives exactly the reference's numbers.
TEST(FusedFallback, NonContiguousParameterMatchesReference) {
  for (const auto& algo : downhill::builtin_algorithm_names()) {
    SCOPED_TRACE(algo);
    const auto options = make_options(OptionSet::kNesterovClipNorm).max_gradient_norm(30);
    const auto strided = run(algo, downhill::Options(options).fused(true), torch::kDouble,
                             strided_param, kFallbackElements, kFallbackUpdates);
    const auto reference = run(algo, downhill::Options(options).fused(false), torch::kDouble,
                               contiguous_param, kFallbackElements, kFallbackUpdates);
    expect_same_trajectory(strided, reference, kExact);
    EXPECT_GT(relative_difference(reference.param, reference.initial), 1e-3);
  }
}

// The ATen operators one update (after the first, which allocates the state) runs.
int64_t operators_per_update(const std::string& algo, const downhill::Options& options,
                             const torch::Tensor& param) {
  auto opt = downhill::build(algo, {{"x", param}}, options);
  const auto grad = torch::randn_like(param);
  const auto hv = torch::randn_like(param);
  opt->apply({grad}, {hv});
  return downhill::testing::aten_operators_in([&] { opt->apply({grad}, {hv}); });
}

// The fused path really runs: an update of a contiguous float/double CPU parameter is one
// pass of the kernel and calls no ATen operator, while the reference path (fused off, or a
// non-contiguous parameter) runs the tensor-op version.
TEST(FusedFallback, FusedPathRunsNoTensorOperators) {
  for (const auto& algo : downhill::builtin_algorithm_names()) {
    SCOPED_TRACE(algo);
    const auto options = make_options(OptionSet::kMomentumClipElem);
    for (auto dtype : {torch::kFloat, torch::kDouble}) {
      const auto values = torch::randn({1000}, torch::TensorOptions().dtype(dtype));
      const int64_t fused =
          operators_per_update(algo, downhill::Options(options).fused(true), values.clone());
      const int64_t reference =
          operators_per_update(algo, downhill::Options(options).fused(false), values.clone());
      const int64_t strided = operators_per_update(algo, downhill::Options(options).fused(true),
                                                   torch::stack({values, values}, 1).select(1, 0));
      EXPECT_EQ(fused, 0) << "the fused update ran ATen operators";
      EXPECT_GT(reference, 0) << "the reference update ran no ATen operator";
      EXPECT_GT(strided, 0) << "a non-contiguous parameter did not fall back to the reference";
    }
  }
}

}  // namespace
