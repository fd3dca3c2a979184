// Hessian-vector products (docs/guide.md's mathematics, ESGD's hv_method): rop, lop and grad agree
// with each other and with Hessians worked out by hand, and ESGD uses them.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using downhill::HvMethod;

constexpr std::array<HvMethod, 3> kMethods = {HvMethod::kRop, HvMethod::kLop, HvMethod::kGrad};

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

// Hv for one parameter: the gradient with a graph, then the library's product.
std::vector<torch::Tensor> products(const torch::Tensor& loss,
                                    const std::vector<torch::Tensor>& params,
                                    const std::vector<torch::Tensor>& probes, HvMethod method) {
  auto grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true,
                                     /*create_graph=*/true);
  return downhill::hessian_vector_products(grads, params, probes, method);
}

void expect_close(const torch::Tensor& actual, const std::vector<double>& expected,
                  const std::string& what) {
  ASSERT_EQ(actual.numel(), static_cast<int64_t>(expected.size())) << what;
  double scale = 1.0;
  for (double e : expected) scale = std::max(scale, std::abs(e));
  const auto flat = actual.to(torch::kDouble).flatten();
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(flat[static_cast<int64_t>(i)].item<double>(), expected[i], 1e-6 * scale)
        << what << " element " << i;
  }
}

// ½ xᵀ A x with a symmetric A: Hv = A r.
TEST(HessianVectorProducts, QuadraticGivesAr) {
  constexpr int n = 4;
  const double a[n][n] = {
      {4.0, 1.0, -0.5, 0.0}, {1.0, 3.0, 0.25, 2.0}, {-0.5, 0.25, 5.0, -1.0}, {0.0, 2.0, -1.0, 6.0}};
  const double r[n] = {0.3, -1.2, 0.7, 2.0};
  std::vector<double> a_flat, r_values(r, r + n), expected(n, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      a_flat.push_back(a[i][j]);
      expected[i] += a[i][j] * r[j];
    }
  }
  const auto matrix = torch::tensor(a_flat, kDouble).reshape({n, n});
  auto x = torch::tensor({1.0, -2.0, 0.5, 3.0}, kDouble).requires_grad_(true);
  const auto probe = torch::tensor(r_values, kDouble);
  for (HvMethod method : kMethods) {
    const auto loss = 0.5 * x.dot(matrix.mv(x));
    const auto hv = products(loss, {x}, {probe}, method);
    ASSERT_EQ(hv.size(), 1u);
    expect_close(hv[0], expected, std::string("quadratic, ") + std::string(to_string(method)));
  }
}

double rosenbrock_hxx(double x, double y) { return 1200 * x * x - 400 * y + 2; }
double rosenbrock_hxy(double x) { return -400 * x; }
constexpr double kRosenbrockHyy = 200;

torch::Tensor rosenbrock(const torch::Tensor& x, const torch::Tensor& y) {
  return (1 - x).square() + 100 * (y - x.square()).square();
}

// (1 − x)² + 100 (y − x²)², one parameter holding (x, y): Hv with the full analytic Hessian
// [[1200x² − 400y + 2, −400x], [−400x, 200]].
TEST(HessianVectorProducts, RosenbrockGivesAnalyticHessianTimesR) {
  for (const auto& point : {std::array<double, 2>{-1.2, 1.0}, std::array<double, 2>{0.5, 2.0}}) {
    const double px = point[0], py = point[1];
    const double r[2] = {0.8, -1.3};
    const std::vector<double> expected = {rosenbrock_hxx(px, py) * r[0] + rosenbrock_hxy(px) * r[1],
                                          rosenbrock_hxy(px) * r[0] + kRosenbrockHyy * r[1]};
    auto xy = torch::tensor({px, py}, kDouble).requires_grad_(true);
    const auto probe = torch::tensor({r[0], r[1]}, kDouble);
    for (HvMethod method : kMethods) {
      const auto loss = rosenbrock(xy[0], xy[1]);
      const auto hv = products(loss, {xy}, {probe}, method);
      expect_close(hv[0], expected,
                   "Rosenbrock at (" + std::to_string(px) + ", " + std::to_string(py) + "), " +
                       std::string(to_string(method)));
    }
  }
}

// With x and y as two parameters, each gets its own diagonal block of the Hessian:
// H_xx r_x and H_yy r_y, without the cross terms.
TEST(HessianVectorProducts, EachParameterUsesItsOwnBlock) {
  const double px = -1.2, py = 1.0, rx = 0.8, ry = -1.3;
  auto x = torch::tensor(px, kDouble).requires_grad_(true);
  auto y = torch::tensor(py, kDouble).requires_grad_(true);
  const auto probe_x = torch::tensor(rx, kDouble);
  const auto probe_y = torch::tensor(ry, kDouble);
  for (HvMethod method : kMethods) {
    const auto hv = products(rosenbrock(x, y), {x, y}, {probe_x, probe_y}, method);
    ASSERT_EQ(hv.size(), 2u);
    expect_close(hv[0], {rosenbrock_hxx(px, py) * rx},
                 "x block, " + std::string(to_string(method)));
    expect_close(hv[1], {kRosenbrockHyy * ry}, "y block, " + std::string(to_string(method)));
  }
}

// A parameter the loss reaches only linearly has a zero Hessian block.
TEST(HessianVectorProducts, LinearParameterHasZeroBlock) {
  auto x = torch::tensor({1.0, 2.0}, kDouble).requires_grad_(true);
  auto b = torch::tensor({0.5, -0.5}, kDouble).requires_grad_(true);
  const auto probe = torch::tensor({1.0, 1.0}, kDouble);
  for (HvMethod method : kMethods) {
    const auto loss = x.square().sum() + 3.0 * b.sum();
    const auto hv = products(loss, {x, b}, {probe, probe}, method);
    expect_close(hv[0], {2.0, 2.0}, "x, " + std::string(to_string(method)));
    expect_close(hv[1], {0.0, 0.0}, "b, " + std::string(to_string(method)));
  }
}

TEST(Esgd, ApplyWithoutHessianVectorProductsThrows) {
  auto x = torch::zeros({3}, kDouble);
  auto opt = downhill::build("esgd", {{"x", x}});
  EXPECT_THROW(opt->apply({torch::ones({3}, kDouble)}), std::invalid_argument);
  // Nothing moved.
  EXPECT_TRUE(x.eq(0).all().item<bool>());
  EXPECT_EQ(opt->update_count(), 0);
}

// step() with each hv_method, from the same point and the same seed (so the same probe r):
// every method gives the same curvature estimate D and the same parameters, D is positive,
// and the loss goes down.
TEST(Esgd, StepRunsWithEachHvMethod) {
  std::vector<torch::Tensor> curvatures, results;
  for (HvMethod method : kMethods) {
    SCOPED_TRACE(std::string(to_string(method)));
    auto xy = torch::tensor({-1.2, 1.0}, kDouble).requires_grad_(true);
    auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
      return rosenbrock(xy[0], xy[1]);
    };
    auto opt = downhill::build("esgd", loss, {{"xy", xy}},
                               downhill::Options().learning_rate(0.1).hv_method(method));
    torch::manual_seed(7);
    double first_loss = 0, last_loss = 0;
    for (int step = 0; step < 20; ++step) {
      const auto monitors = opt->step({});
      if (step == 0) first_loss = monitors.at("loss");
      last_loss = monitors.at("loss");
    }
    EXPECT_LT(last_loss, first_loss);
    EXPECT_TRUE(torch::isfinite(xy).all().item<bool>());
    torch::Tensor curvature;
    for (const auto& [name, tensor] : opt->state()) {
      if (name == "xy.D") curvature = tensor.clone();
    }
    ASSERT_TRUE(curvature.defined()) << "state() has no xy.D";
    EXPECT_TRUE((curvature > 0).all().item<bool>());
    curvatures.push_back(curvature);
    results.push_back(xy.detach().clone());
  }
  for (size_t m = 1; m < kMethods.size(); ++m) {
    EXPECT_TRUE(torch::allclose(curvatures[m], curvatures[0], 1e-9, 0))
        << to_string(kMethods[m]) << " D " << curvatures[m] << " vs rop " << curvatures[0];
    EXPECT_TRUE(torch::allclose(results[m], results[0], 1e-9, 0))
        << to_string(kMethods[m]) << " x " << results[m] << " vs rop " << results[0];
  }
}

// ESGD clips each gradient inside the graph with its own parameter group's settings. A linear
// loss has a zero Hessian, so D stays 0 and, with ε = 1, the step is exactly −lr·clip(g): the
// clipped gradients show in the parameters. Worked out by hand, with lr = 0.5:
//   a, group 0, elements clamped to ±0.5: g = (2, −0.3, 0.8) → (0.5, −0.3, 0.5);
//   b, group 1, norm clipped to 1: g = (3, 4), ‖g‖ = 5 → (0.6, 0.8);
//   c, group 2, not clipped: g = (2, −3).
TEST(Esgd, EachParameterIsClippedWithItsOwnGroupsSettings) {
  auto a = torch::zeros({3}, kDouble).requires_grad_(true);
  auto b = torch::zeros({2}, kDouble).requires_grad_(true);
  auto c = torch::zeros({2}, kDouble).requires_grad_(true);
  const auto ga = torch::tensor({2.0, -0.3, 0.8}, kDouble);
  const auto gb = torch::tensor({3.0, 4.0}, kDouble);
  const auto gc = torch::tensor({2.0, -3.0}, kDouble);
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    return (ga * a).sum() + (gb * b).sum() + (gc * c).sum();
  };
  downhill::Params params{{"a", a}};
  params
      .group({{"b", b}}, [](downhill::Options& o) { o.max_gradient_elem(0).max_gradient_norm(1); })
      .group({{"c", c}}, [](downhill::Options& o) { o.max_gradient_elem(0).max_gradient_norm(0); });
  auto opt = downhill::build(
      "esgd", loss, params,
      downhill::Options().learning_rate(0.5).rms_regularizer(1.0).max_gradient_elem(0.5));
  opt->step({});
  auto expect_step = [](const torch::Tensor& param, const std::vector<double>& clipped,
                        const std::string& what) {
    ASSERT_EQ(param.numel(), static_cast<int64_t>(clipped.size())) << what;
    for (size_t i = 0; i < clipped.size(); ++i) {
      EXPECT_NEAR(param[static_cast<int64_t>(i)].item<double>(), -0.5 * clipped[i], 1e-12)
          << what << " element " << i;
    }
  };
  expect_step(a, {0.5, -0.3, 0.5}, "a (group 0: max_gradient_elem 0.5)");
  expect_step(b, {0.6, 0.8}, "b (group 1: max_gradient_norm 1)");
  expect_step(c, {2.0, -3.0}, "c (group 2: no clipping)");
}

}  // namespace
