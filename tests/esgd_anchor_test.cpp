// ESGD through step(), anchored outside the library: the expected Hessian-vector product of
// each parameter's clipped gradient comes from central finite differences of a gradient
// written by hand (docs/guide.md, "The mathematics": Hv is that of the gradient *after*
// clipping, per parameter block; rop = J·r, lop and grad = rᵀJ, with J the Jacobian of the
// clipped gradient), never from the library's own second derivatives.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

namespace {

using downhill::HvMethod;
using Vec = std::vector<double>;
using Matrix = std::vector<Vec>;  // rows

// The three parameters, flattened: x [3], y [2, 2] (row-major), z [] (a scalar).
constexpr int kBlocks = 3;
using Blocks = std::array<Vec, kBlocks>;
const std::array<std::string, kBlocks> kNames = {"x", "y", "z"};

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

// The loss, non-quadratic and coupled, with non-diagonal Hessian blocks:
//   L = ¼ Σ_k w_k (Mx)_k⁴ + ½ (xᵀx)(vᵀy)² + ¼ (yᵀy)² + ⅓ z³ + z (vᵀy).
const double kM[4][3] = {{1.0, 0.5, -0.3}, {0.2, -1.1, 0.6}, {-0.4, 0.3, 1.2}, {0.7, 0.8, 0.5}};
const Vec kW = {1.0, 0.5, 2.0, 0.8};
const Vec kV = {0.6, -0.4, 0.9, 0.3};

// The starting point: the clipping below bites for some elements and not for others.
const Blocks kStart = {Vec{1.0, -0.8, 0.6}, Vec{0.5, -0.9, 0.2, 0.6}, Vec{0.7}};

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

Vec m_times(const Vec& x) {
  Vec mx(4, 0.0);
  for (int k = 0; k < 4; ++k) {
    for (int i = 0; i < 3; ++i) mx[k] += kM[k][i] * x[i];
  }
  return mx;
}

double loss_value(const Blocks& p) {
  const auto& [x, y, z] = p;
  const Vec mx = m_times(x);
  double quartic = 0;
  for (int k = 0; k < 4; ++k) quartic += kW[k] * std::pow(mx[k], 4);
  const double vy = dot(kV, y), yy = dot(y, y);
  return 0.25 * quartic + 0.5 * dot(x, x) * vy * vy + 0.25 * yy * yy + z[0] * z[0] * z[0] / 3 +
         z[0] * vy;
}

// The gradient, derived by hand:
//   ∂L/∂x = Mᵀ(w ⊙ (Mx)³) + x (vᵀy)²
//   ∂L/∂y = (xᵀx)(vᵀy) v + (yᵀy) y + z v
//   ∂L/∂z = z² + vᵀy
Blocks gradient(const Blocks& p) {
  const auto& [x, y, z] = p;
  const Vec mx = m_times(x);
  const double vy = dot(kV, y), xx = dot(x, x), yy = dot(y, y);
  Blocks g = {Vec(3, 0.0), Vec(4, 0.0), Vec(1, 0.0)};
  for (int i = 0; i < 3; ++i) {
    for (int k = 0; k < 4; ++k) g[0][i] += kM[k][i] * kW[k] * std::pow(mx[k], 3);
    g[0][i] += x[i] * vy * vy;
  }
  for (int j = 0; j < 4; ++j) g[1][j] = xx * vy * kV[j] + yy * y[j] + z[0] * kV[j];
  g[2][0] = z[0] * z[0] + vy;
  return g;
}

torch::Tensor torch_loss(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& z) {
  const auto m = torch::tensor({kM[0][0], kM[0][1], kM[0][2], kM[1][0], kM[1][1], kM[1][2],
                                kM[2][0], kM[2][1], kM[2][2], kM[3][0], kM[3][1], kM[3][2]},
                               kDouble);
  const auto w = torch::tensor(kW, kDouble);
  const auto v = torch::tensor(kV, kDouble).reshape({2, 2});
  const auto vy = (v * y).sum();
  return 0.25 * (w * m.reshape({4, 3}).mv(x).pow(4)).sum() + 0.5 * x.dot(x) * vy.square() +
         0.25 * y.square().sum().square() + z.pow(3) / 3 + z * vy;
}

enum class Clip { kNone, kNorm, kElem };
constexpr double kMaxNorm = 2.5;
constexpr double kMaxElem = 2.0;

// Clipping as docs/guide.md states it, per parameter.
Vec clip(const Vec& g, Clip mode) {
  Vec c = g;
  if (mode == Clip::kElem) {
    for (double& e : c) e = std::clamp(e, -kMaxElem, kMaxElem);
  } else if (mode == Clip::kNorm) {
    const double norm = std::sqrt(dot(g, g));
    if (norm > kMaxNorm) {
      for (double& e : c) e *= kMaxNorm / norm;
    }
  }
  return c;
}

// J[k][j] = ∂c(g_b)_k / ∂p_b,j by central differences, the other blocks held fixed.
constexpr double kStep = 1e-5;
Matrix clipped_jacobian(const Blocks& p, int b, Clip mode) {
  const size_t n = p[b].size();
  Matrix jacobian(n, Vec(n, 0.0));
  for (size_t j = 0; j < n; ++j) {
    Blocks plus = p, minus = p;
    plus[b][j] += kStep;
    minus[b][j] -= kStep;
    const Vec up = clip(gradient(plus)[b], mode), down = clip(gradient(minus)[b], mode);
    for (size_t k = 0; k < n; ++k) jacobian[k][j] = (up[k] - down[k]) / (2 * kStep);
  }
  return jacobian;
}

Vec times(const Matrix& a, const Vec& r) {  // a·r
  Vec out(a.size(), 0.0);
  for (size_t k = 0; k < a.size(); ++k) out[k] = dot(a[k], r);
  return out;
}

Vec transpose_times(const Matrix& a, const Vec& r) {  // aᵀ·r
  Vec out(a.size(), 0.0);
  for (size_t k = 0; k < a.size(); ++k) {
    for (size_t j = 0; j < a.size(); ++j) out[j] += a[k][j] * r[k];
  }
  return out;
}

// rop is the Jacobian of the clipped gradient times r; lop and grad are rᵀJ.
Vec expected_hv(const Matrix& jacobian, const Vec& r, HvMethod method) {
  return method == HvMethod::kRop ? times(jacobian, r) : transpose_times(jacobian, r);
}

Vec values_of(const torch::Tensor& t) {
  const auto flat = t.detach().to(torch::kDouble).contiguous().flatten();
  return Vec(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
}

double ewma_weight(double halflife) { return std::exp(-std::log(2.0) / halflife); }

constexpr double kLearningRate = 0.1;
constexpr double kHalflife = 3;
constexpr double kRegularizer = 0.5;
constexpr uint64_t kSeed = 20240611;

// D after one update from D = 0: (1 − γ)(Hr)².
Vec curvature_of(const Vec& hv) {
  const double gamma = ewma_weight(kHalflife);
  Vec d(hv.size());
  for (size_t k = 0; k < hv.size(); ++k) d[k] = (1 - gamma) * hv[k] * hv[k];
  return d;
}

double max_abs_difference(const Blocks& a, const Blocks& b) {
  double worst = 0;
  for (int blk = 0; blk < kBlocks; ++blk) {
    for (size_t k = 0; k < a[blk].size(); ++k) {
      worst = std::max(worst, std::abs(a[blk][k] - b[blk][k]));
    }
  }
  return worst;
}

// The test's own machinery, checked before it is trusted: the hand-derived gradient is the
// loss's (autograd, first order only), the finite-difference Hessian of the unclipped gradient
// is symmetric, the directional difference along r is J·r, and the clipping bites as the
// cases below assume, far from its thresholds.
TEST(EsgdAnchorPremises, GradientJacobianAndClippingAreAsAssumed) {
  auto x = torch::tensor(kStart[0], kDouble).requires_grad_(true);
  auto y = torch::tensor(kStart[1], kDouble).reshape({2, 2}).clone().requires_grad_(true);
  auto z = torch::tensor(kStart[2][0], kDouble).requires_grad_(true);
  const auto loss = torch_loss(x, y, z);
  EXPECT_NEAR(loss.item<double>(), loss_value(kStart), 1e-12);
  const auto autograd = torch::autograd::grad({loss}, {x, y, z});
  const Blocks g = gradient(kStart);
  for (int b = 0; b < kBlocks; ++b) {
    const Vec actual = values_of(autograd[b]);
    ASSERT_EQ(actual.size(), g[b].size()) << kNames[b];
    for (size_t k = 0; k < g[b].size(); ++k) {
      EXPECT_NEAR(actual[k], g[b][k], 1e-12) << kNames[b] << " element " << k;
    }
  }

  for (int b = 0; b < kBlocks; ++b) {
    const Matrix h = clipped_jacobian(kStart, b, Clip::kNone);
    for (size_t k = 0; k < h.size(); ++k) {
      for (size_t j = 0; j < k; ++j) EXPECT_NEAR(h[k][j], h[j][k], 1e-7) << kNames[b];
    }
    // Off-diagonal curvature, or rop and lop could not differ under clipping.
    if (h.size() > 1) {
      EXPECT_GT(std::abs(h[0][1]), 0.1) << kNames[b];
    }

    Vec r(h.size());
    for (size_t k = 0; k < r.size(); ++k) r[k] = 0.3 + 0.7 * static_cast<double>(k);
    for (Clip mode : {Clip::kNorm, Clip::kElem}) {
      Blocks plus = kStart, minus = kStart;
      for (size_t k = 0; k < r.size(); ++k) {
        plus[b][k] += kStep * r[k];
        minus[b][k] -= kStep * r[k];
      }
      const Vec up = clip(gradient(plus)[b], mode), down = clip(gradient(minus)[b], mode);
      const Vec jr = times(clipped_jacobian(kStart, b, mode), r);
      for (size_t k = 0; k < r.size(); ++k) {
        EXPECT_NEAR((up[k] - down[k]) / (2 * kStep), jr[k], 1e-6) << kNames[b] << " " << k;
      }
    }
  }

  // Element clipping at 2: x has 1 of 3 elements clipped, y 3 of 4, z none; each element is
  // at least 0.3 from the threshold, far beyond what a step of 1e-5 can move it.
  const std::array<int, kBlocks> clipped_count = {1, 3, 0};
  for (int b = 0; b < kBlocks; ++b) {
    int clipped = 0;
    for (double e : g[b]) {
      EXPECT_GT(std::abs(std::abs(e) - kMaxElem), 0.3) << kNames[b];
      clipped += std::abs(e) > kMaxElem;
    }
    EXPECT_EQ(clipped, clipped_count[b]) << kNames[b];
  }
  // Norm clipping at 2.5 bites for x (‖g‖ ≈ 3.2) and y (≈ 4.7), not for z (1.51).
  EXPECT_GT(std::sqrt(dot(g[0], g[0])), kMaxNorm + 0.5);
  EXPECT_GT(std::sqrt(dot(g[1], g[1])), kMaxNorm + 0.5);
  EXPECT_LT(std::sqrt(dot(g[2], g[2])), kMaxNorm - 0.5);
}

using AnchorCase = std::tuple<HvMethod, Clip, bool>;

std::string case_name(const testing::TestParamInfo<AnchorCase>& info) {
  const auto& [method, mode, fused] = info.param;
  const char* clip_name = mode == Clip::kNone ? "NoClip" : mode == Clip::kNorm ? "Norm" : "Elem";
  return std::string(to_string(method)) + "_" + clip_name + "_" + (fused ? "fused" : "reference");
}

class EsgdAnchor : public testing::TestWithParam<AnchorCase> {};

// One step() of ESGD from kStart: the probe r is the generator's next N(0, 1) draws, one
// randn_like per parameter in order; D = (1 − γ)(Hr)² with Hr from the finite-difference
// Jacobian of the clipped gradient; p ← p − lr·c(g) / (sqrt(D) + ε).
TEST_P(EsgdAnchor, OneStepMatchesFiniteDifferences) {
  const auto& [method, mode, fused] = GetParam();
  auto x = torch::tensor(kStart[0], kDouble).requires_grad_(true);
  auto y = torch::tensor(kStart[1], kDouble).reshape({2, 2}).clone().requires_grad_(true);
  auto z = torch::tensor(kStart[2][0], kDouble).requires_grad_(true);
  auto options = downhill::Options()
                     .learning_rate(kLearningRate)
                     .rms_halflife(kHalflife)
                     .rms_regularizer(kRegularizer)
                     .hv_method(method)
                     .fused(fused);
  if (mode == Clip::kNorm) options.max_gradient_norm(kMaxNorm);
  if (mode == Clip::kElem) options.max_gradient_elem(kMaxElem);
  auto opt = downhill::build(
      "esgd", [&](const downhill::Batch&) -> downhill::Evaluation { return torch_loss(x, y, z); },
      {{"x", x}, {"y", y}, {"z", z}}, options);

  torch::manual_seed(kSeed);
  const auto monitors = opt->step({});
  EXPECT_NEAR(monitors.at("loss"), loss_value(kStart), 1e-12);
  EXPECT_EQ(opt->update_count(), 1);

  // The same probes, drawn again from the same seed: step() draws nothing else from the
  // generator, and draws one randn_like per parameter, in the order of params().
  torch::manual_seed(kSeed);
  const std::array<torch::Tensor, kBlocks> shapes = {
      torch::zeros({3}, kDouble), torch::zeros({2, 2}, kDouble), torch::zeros({}, kDouble)};
  Blocks probes;
  for (int b = 0; b < kBlocks; ++b) probes[b] = values_of(torch::randn_like(shapes[b]));

  const Blocks g = gradient(kStart);
  Blocks clipped, hv, curvature, expected_params;
  // What plausible bugs would give instead, to show that the tolerances tell them apart.
  Blocks curvature_from_gradient, curvature_unclipped, curvature_swapped;
  for (int b = 0; b < kBlocks; ++b) {
    clipped[b] = clip(g[b], mode);
    const Matrix jacobian = clipped_jacobian(kStart, b, mode);
    hv[b] = expected_hv(jacobian, probes[b], method);
    curvature[b] = curvature_of(hv[b]);
    expected_params[b] = kStart[b];
    for (size_t k = 0; k < hv[b].size(); ++k) {
      expected_params[b][k] -=
          kLearningRate * clipped[b][k] / (std::sqrt(curvature[b][k]) + kRegularizer);
    }
    curvature_from_gradient[b] = curvature_of(clipped[b]);
    curvature_unclipped[b] =
        curvature_of(expected_hv(clipped_jacobian(kStart, b, Clip::kNone), probes[b], method));
    curvature_swapped[b] = curvature_of(expected_hv(
        jacobian, probes[b], method == HvMethod::kRop ? HvMethod::kLop : HvMethod::kRop));
  }

  double scale = 1.0;
  for (const auto& block : curvature) {
    for (double d : block) scale = std::max(scale, d);
  }
  const double tolerance = 1e-7 * scale;
  // A wrong implementation lands at least 1e4 tolerances away.
  EXPECT_GT(max_abs_difference(curvature_from_gradient, curvature), 1e4 * tolerance);
  if (mode != Clip::kNone) {
    EXPECT_GT(max_abs_difference(curvature_unclipped, curvature), 1e4 * tolerance);
    EXPECT_GT(max_abs_difference(curvature_swapped, curvature), 1e4 * tolerance);
  }

  Blocks actual_curvature;
  int found = 0;
  for (const auto& [name, tensor] : opt->state()) {
    for (int b = 0; b < kBlocks; ++b) {
      if (name == kNames[b] + ".D") {
        actual_curvature[b] = values_of(tensor);
        ++found;
      }
    }
  }
  ASSERT_EQ(found, kBlocks) << "state() lacks x.D, y.D or z.D";
  const std::array<torch::Tensor, kBlocks> params = {x, y, z};
  for (int b = 0; b < kBlocks; ++b) {
    ASSERT_EQ(actual_curvature[b].size(), curvature[b].size()) << kNames[b];
    const Vec actual_params = values_of(params[b]);
    ASSERT_EQ(actual_params.size(), expected_params[b].size()) << kNames[b];
    for (size_t k = 0; k < curvature[b].size(); ++k) {
      EXPECT_NEAR(actual_curvature[b][k], curvature[b][k], tolerance)
          << kNames[b] << ".D element " << k << " (expected Hr " << hv[b][k] << ", r "
          << probes[b][k] << ")";
      EXPECT_NEAR(actual_params[k], expected_params[b][k], 1e-8) << kNames[b] << " element " << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllMethods, EsgdAnchor,
    testing::Combine(testing::Values(HvMethod::kRop, HvMethod::kLop, HvMethod::kGrad),
                     testing::Values(Clip::kNone, Clip::kNorm, Clip::kElem), testing::Bool()),
    case_name);

}  // namespace
