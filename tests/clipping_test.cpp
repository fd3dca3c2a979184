// Gradient clipping (docs/guide.md's mathematics): elementwise clipping wins over norm clipping,
// the norm is that of each parameter on its own, and a zero gradient stays zero. Expected numbers
// are worked out by hand in the comments. SGD with learning_rate 1 and no momentum makes the
// parameter move by exactly minus the clipped gradient.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace {

torch::Tensor doubles(std::vector<double> values) {
  return torch::tensor(values, torch::TensorOptions().dtype(torch::kDouble));
}

void expect_values(const torch::Tensor& actual, const std::vector<double>& expected,
                   const std::string& what) {
  ASSERT_EQ(actual.numel(), static_cast<int64_t>(expected.size())) << what;
  const auto flat = actual.to(torch::kDouble).flatten();
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(flat[static_cast<int64_t>(i)].item<double>(), expected[i], 1e-12)
        << what << " element " << i;
  }
}

class Clipping : public testing::TestWithParam<bool> {
 protected:
  downhill::Options sgd_options() const {
    return downhill::Options().learning_rate(1.0).fused(GetParam());
  }
};

TEST_P(Clipping, ElementwiseClippingWinsOverNormClipping) {
  auto x = torch::zeros({3}, torch::kDouble);
  auto opt = downhill::build("sgd", {{"x", x}},
                             sgd_options().max_gradient_elem(1.0).max_gradient_norm(0.5));
  // clamp({3, −0.25, −4}, −1, 1) = {1, −0.25, −1}. Had the norm limit 0.5 also been applied,
  // the norm 1.5 of the clamped gradient would have scaled it by 1/3.
  ASSERT_TRUE(opt->apply({doubles({3.0, -0.25, -4.0})}));
  expect_values(x, {-1.0, 0.25, 1.0}, "x");
}

TEST_P(Clipping, ElementwiseClippingAlone) {
  auto x = torch::zeros({4}, torch::kDouble);
  auto opt = downhill::build("sgd", {{"x", x}}, sgd_options().max_gradient_elem(2.0));
  // clamp({5, −7, 1.5, −2}, −2, 2) = {2, −2, 1.5, −2}.
  ASSERT_TRUE(opt->apply({doubles({5.0, -7.0, 1.5, -2.0})}));
  expect_values(x, {-2.0, 2.0, -1.5, 2.0}, "x");
}

TEST_P(Clipping, NormIsPerParameter) {
  auto a = torch::zeros({2}, torch::kDouble);
  auto b = torch::zeros({2}, torch::kDouble);
  auto c = torch::zeros({2, 2}, torch::kDouble);
  auto opt =
      downhill::build("sgd", {{"a", a}, {"b", b}, {"c", c}}, sgd_options().max_gradient_norm(2.0));
  // a: {3, 4} has norm 5 > 2: scaled by 2/5 to {1.2, 1.6}.
  // b: {0.3, 0.4} has norm 0.5 ≤ 2: unchanged (a global norm, sqrt(25 + 0.25 + 100) ≈ 11.19,
  //    would have shrunk it).
  // c: {0, 6, 8, 0} has norm 10: scaled by 1/5 to {0, 1.2, 1.6, 0}.
  ASSERT_TRUE(opt->apply(
      {doubles({3.0, 4.0}), doubles({0.3, 0.4}), doubles({0.0, 6.0, 8.0, 0.0}).reshape({2, 2})}));
  expect_values(a, {-1.2, -1.6}, "a");
  expect_values(b, {-0.3, -0.4}, "b");
  expect_values(c, {0.0, -1.2, -1.6, 0.0}, "c");
}

TEST_P(Clipping, NormAtTheLimitIsUnchanged) {
  auto x = torch::zeros({2}, torch::kDouble);
  auto opt = downhill::build("sgd", {{"x", x}}, sgd_options().max_gradient_norm(5.0));
  // {3, −4} has norm exactly 5: min(1, 5/5) = 1.
  ASSERT_TRUE(opt->apply({doubles({3.0, -4.0})}));
  expect_values(x, {-3.0, 4.0}, "x");
}

TEST_P(Clipping, NormClippingFeedsTheAlgorithm) {
  // RProp only sees signs; ADAGRAD sees magnitudes: lr·g / sqrt(g² + ε) with the clipped g.
  // g = {6, 8} (norm 10) clipped to norm 1 is {0.6, 0.8}; with ε = 0.01:
  // u = 0.5 · {0.6 / sqrt(0.37), 0.8 / sqrt(0.65)}.
  auto x = torch::zeros({2}, torch::kDouble);
  auto opt = downhill::build(
      "adagrad", {{"x", x}},
      downhill::Options().learning_rate(0.5).rms_regularizer(0.01).max_gradient_norm(1.0).fused(
          GetParam()));
  ASSERT_TRUE(opt->apply({doubles({6.0, 8.0})}));
  expect_values(x, {-0.5 * 0.6 / std::sqrt(0.37), -0.5 * 0.8 / std::sqrt(0.65)}, "x");
}

TEST_P(Clipping, ZeroGradientStaysZeroForEveryAlgorithm) {
  for (const auto& algo : downhill::builtin_algorithm_names()) {
    for (const bool elementwise : {false, true}) {
      SCOPED_TRACE(algo + (elementwise ? " with max_gradient_elem" : " with max_gradient_norm"));
      auto x = doubles({0.5, -1.5, 2.0});
      // weight_decay(0): AdamW's own default (1e-2) decays parameters whatever the gradient.
      auto options =
          downhill::Options().learning_rate(0.1).momentum(0.5).weight_decay(0).fused(GetParam());
      if (elementwise) {
        options.max_gradient_elem(1.0).max_gradient_norm(1.0);
      } else {
        options.max_gradient_norm(1.0);
      }
      auto opt = downhill::build(algo, {{"x", x}}, options);
      const auto zero = torch::zeros({3}, torch::kDouble);
      for (int step = 0; step < 3; ++step) ASSERT_TRUE(opt->apply({zero}, {zero}));
      // Every algorithm's update of a zero gradient is zero (ε keeps the denominators
      // positive), so nothing moves and nothing becomes NaN.
      expect_values(x, {0.5, -1.5, 2.0}, "x");
      for (const auto& [name, tensor] : opt->state()) {
        EXPECT_TRUE(torch::isfinite(tensor).all().item<bool>()) << "state " << name;
      }
    }
  }
}

TEST_P(Clipping, ZeroGradientBesideAClippedOne) {
  auto a = torch::zeros({2}, torch::kDouble);
  auto b = torch::zeros({3}, torch::kDouble);
  auto opt = downhill::build("sgd", {{"a", a}, {"b", b}}, sgd_options().max_gradient_norm(1.0));
  // a: {0, 0} stays zero; b: {0, 3, 4} (norm 5) becomes {0, 0.6, 0.8}.
  ASSERT_TRUE(opt->apply({doubles({0.0, 0.0}), doubles({0.0, 3.0, 4.0})}));
  expect_values(a, {0.0, 0.0}, "a");
  expect_values(b, {0.0, -0.6, -0.8}, "b");
}

TEST_P(Clipping, FloatParametersAreClippedToo) {
  auto x = torch::zeros({2}, torch::kFloat);
  auto y = torch::zeros({2}, torch::kFloat);
  auto opt = downhill::build("sgd", {{"x", x}, {"y", y}}, sgd_options().max_gradient_norm(1.0));
  // x: {30, 40} (norm 50) → {0.6, 0.8}; y: {0.3, −0.4} (norm 0.5) unchanged.
  ASSERT_TRUE(opt->apply({torch::tensor({30.0f, 40.0f}), torch::tensor({0.3f, -0.4f})}));
  EXPECT_NEAR(x[0].item<double>(), -0.6, 1e-6);
  EXPECT_NEAR(x[1].item<double>(), -0.8, 1e-6);
  EXPECT_NEAR(y[0].item<double>(), -0.3, 1e-6);
  EXPECT_NEAR(y[1].item<double>(), 0.4, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(FusedAndReference, Clipping, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "fused" : "reference");
                         });

// step() clips before the algorithm too: the loss 10·(x0 + x1) has gradient {10, 10}
// (norm 10·√2); with max_gradient_norm 1 SGD moves each element by lr/√2.
TEST(ClippingThroughStep, StepClipsTheGradient) {
  auto x = torch::zeros({2}, torch::TensorOptions().dtype(torch::kDouble).requires_grad(true));
  auto opt = downhill::build(
      "sgd", [&](const downhill::Batch&) -> downhill::Evaluation { return 10.0 * x.sum(); },
      {{"x", x}}, downhill::Options().learning_rate(0.5).max_gradient_norm(1.0));
  opt->step({});
  const double expected = -0.5 / std::sqrt(2.0);
  EXPECT_NEAR(x[0].item<double>(), expected, 1e-12);
  EXPECT_NEAR(x[1].item<double>(), expected, 1e-12);
}

}  // namespace
