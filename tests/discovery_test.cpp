// Finding the parameters of a loss in its autograd graph (docs/guide.md's interfaces).
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <optional>
#include <string>
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

std::vector<std::string> names_of(const downhill::Params& params) {
  std::vector<std::string> out;
  for (const auto& [name, tensor] : params) out.push_back(name);
  return out;
}

// Whether `found` holds exactly `expected`, in this order, as the same tensors (not copies).
void expect_same_tensors(const downhill::Params& found,
                         const std::vector<torch::Tensor>& expected) {
  ASSERT_EQ(found.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_TRUE(found.tensor(i).is_same(expected[i])) << "parameter " << i;
  }
}

TEST(Discovery, FindsExactlyTheLeavesOfATwoParameterLoss) {
  auto u = torch::randn({4, 2}, torch::requires_grad());
  auto v = torch::randn({2, 3}, torch::requires_grad());
  auto data = torch::randn({4, 3});  // no grad: not a parameter
  auto loss = (data - u.mm(v)).square().mean() + u.abs().mean();
  const auto params = downhill::discover_params(loss);
  expect_same_tensors(params, {u, v});
  EXPECT_EQ(names_of(params), (std::vector<std::string>{"unnamed0", "unnamed1"}));
}

TEST(Discovery, TheOrderIsStableAndFollowsTheExpression) {
  auto a = torch::randn({3}, torch::requires_grad());
  auto b = torch::randn({3}, torch::requires_grad());
  auto a_then_b = [&] { return (a * 2 + b.exp()).sum(); };
  auto b_then_a = [&] { return (b * 2 + a.exp()).sum(); };

  expect_same_tensors(downhill::discover_params(a_then_b()), {a, b});
  expect_same_tensors(downhill::discover_params(a_then_b()), {a, b});  // same order again
  // Swapping the roles in the expression swaps the order; creation order does not matter.
  expect_same_tensors(downhill::discover_params(b_then_a()), {b, a});
}

TEST(Discovery, ALeafUsedTwiceIsFoundOnce) {
  auto w = torch::randn({3}, torch::requires_grad());
  auto c = torch::randn({3}, torch::requires_grad());
  const auto params = downhill::discover_params((w * w).sum() + (c * w).sum());
  expect_same_tensors(params, {w, c});
}

TEST(Discovery, IgnoresTensorsThatDoNotRequireGrad) {
  auto w = torch::randn({3}, torch::requires_grad());
  auto constant = torch::randn({3});
  auto frozen = torch::randn({3}, torch::requires_grad()).detach();
  const auto params = downhill::discover_params((constant * w + frozen).square().sum());
  expect_same_tensors(params, {w});
  EXPECT_EQ(names_of(params), (std::vector<std::string>{"unnamed0"}));
}

TEST(Discovery, ALossWithoutParametersIsRefused) {
  EXPECT_THROW(downhill::discover_params(torch::randn({3}).sum()), std::invalid_argument);
}

TEST(Discovery, MinimizeWithoutParamsOptimizesTheDiscoveredLeaves) {
  // Σ(a − 1)² + Σ(b + 2)², reached through the data so that a batch is needed.
  auto a = torch::zeros({2}, torch::dtype(torch::kFloat64).requires_grad(true));
  auto b = torch::full({3}, 5.0, torch::dtype(torch::kFloat64).requires_grad(true));
  auto untouched = torch::full({2}, 7.0, torch::kFloat64);
  const auto untouched_before = untouched.clone();
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    auto target = batch[0].mean();  // the data: all ones
    return (a - target).square().sum() + (b + 2 * target).square().sum() + (untouched * 0).sum();
  };
  const auto ones = torch::ones({8}, torch::kFloat64);
  const auto [training, validation] = downhill::minimize(
      loss, ones, downhill::Options().algo("sgd").learning_rate(0.25).max_updates(200));
  EXPECT_TRUE(torch::allclose(a, torch::ones({2}, torch::kFloat64), 0, 1e-9)) << a;
  EXPECT_TRUE(torch::allclose(b, torch::full({3}, -2.0, torch::kFloat64), 0, 1e-9)) << b;
  EXPECT_TRUE(torch::equal(untouched, untouched_before));
  EXPECT_NEAR(validation.at("loss"), 0.0, 1e-12);
}

}  // namespace
