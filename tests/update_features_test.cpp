// The update features of issue 9 through the public API, each against arithmetic written
// here from its formula (plain double loops, or torch used as a calculator on copies):
// decoupled weight decay (Adam as PyTorch's AdamW, SGD with each momentum, ADADELTA),
// betas, global-norm clipping, learning-rate schedules through the optimizer, parameter
// groups and frozen groups, and live settings.
#include <downhill/downhill.h>
#include <downhill/schedules.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "test_support.h"

namespace {

using downhill::testing::message_of;
using testing::HasSubstr;
using testing::Not;
using Vector = std::vector<double>;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Silences downhill for the whole program, and puts its level back at the end.
class QuietLogs : public ::testing::Environment {
 public:
  void SetUp() override {
    saved_ = downhill::logger()->level();
    downhill::logger()->set_level(spdlog::level::off);
  }
  void TearDown() override { downhill::logger()->set_level(saved_); }

 private:
  spdlog::level::level_enum saved_ = spdlog::level::info;
};
[[maybe_unused]] const auto* const kQuietLogs = ::testing::AddGlobalTestEnvironment(new QuietLogs);

// A float64 tensor holding `values`, in `shape` (1-D when empty).
torch::Tensor doubles(const Vector& values, std::vector<int64_t> shape = {}) {
  auto t = torch::tensor(values, torch::kDouble);
  return shape.empty() ? t : t.reshape(shape);
}

// The elements of `t`, as doubles, in row-major order.
Vector values_of(const torch::Tensor& t) {
  const auto flat = t.detach().to(torch::kDouble).contiguous().flatten();
  const auto* data = flat.data_ptr<double>();
  return Vector(data, data + flat.numel());
}

// |actual − expected| ≤ relative·|expected| for every element (exact where expected is 0).
void expect_close(const Vector& actual, const Vector& expected, double relative,
                  const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_LE(std::abs(actual[i] - expected[i]), relative * std::abs(expected[i]))
        << what << ", element " << i << ": " << actual[i] << " vs " << expected[i];
  }
}

void expect_close(const torch::Tensor& actual, const Vector& expected, double relative,
                  const std::string& what) {
  expect_close(values_of(actual), expected, relative, what);
}

bool same(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() && torch::equal(a, b);
}

// A copy of every state tensor, by name, to compare bit for bit later.
downhill::NamedTensors snapshot(downhill::Optimizer& opt) {
  downhill::NamedTensors out;
  for (const auto& [name, tensor] : opt.state()) out.emplace_back(name, tensor.clone());
  return out;
}

void expect_same_state(downhill::Optimizer& opt, const downhill::NamedTensors& before) {
  const auto now = opt.state();
  ASSERT_EQ(now.size(), before.size());
  for (size_t k = 0; k < now.size(); ++k) {
    EXPECT_EQ(now[k].first, before[k].first);
    EXPECT_TRUE(same(now[k].second, before[k].second)) << now[k].first;
  }
}

torch::Tensor state_of(downhill::Optimizer& opt, const std::string& name) {
  for (const auto& [key, tensor] : opt.state()) {
    if (key == name) return tensor;
  }
  ADD_FAILURE() << "no state tensor " << name;
  return {};
}

std::vector<std::string> state_names(downhill::Optimizer& opt) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : opt.state()) names.push_back(name);
  return names;
}

// A deterministic gradient of n elements for update t.
Vector wave(size_t n, int t, double scale = 1.0, double phase = 0.0) {
  Vector g(n);
  for (size_t i = 0; i < n; ++i) {
    const double x = static_cast<double>(i);
    g[i] = scale * std::sin(0.9 * x + 0.37 * t + phase) * (1.0 + 0.25 * x);
  }
  return g;
}

// Momentum as the guide gives it: p ← p − u (μ = 0); w ← μw − u or, Nesterov,
// w ← μ²w − (1+μ)u; then p ← p + w.
void step_with_momentum(double& p, double& w, double u, double mu, bool nesterov) {
  if (mu == 0) {
    p -= u;
    return;
  }
  w = nesterov ? mu * mu * w - (1 + mu) * u : mu * w - u;
  p += w;
}

// =================================================================================
// 1. Adam with weight decay, β₁ 0.9, β₂ 0.999 and momentum 0 is PyTorch's AdamW.
// =================================================================================

TEST(AdamW, AdamWithWeightDecayIsAdamWStepByStep) {
  constexpr size_t kN = 10;
  constexpr int kSteps = 60;
  const double lr = 1e-3, lambda = 0.25, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  Vector x(kN);
  for (size_t i = 0; i < kN; ++i) {
    x[i] = (i % 2 == 0 ? 1.0 : -1.0) * (0.5 + 0.1 * static_cast<double>(i));
  }

  auto p = doubles(x);
  auto opt = downhill::build("adam", {{"p", p}},
                             downhill::Options()
                                 .beta1(0.9)
                                 .beta2(0.999)
                                 .weight_decay(lambda)
                                 .momentum(0)
                                 .rms_regularizer(eps)
                                 .learning_rate(lr));

  // LibTorch's own AdamW, driven with the same gradients.
  auto q = doubles(x).requires_grad_(true);
  torch::optim::AdamW adamw(
      std::vector<torch::Tensor>{q},
      torch::optim::AdamWOptions(lr).betas(std::make_tuple(b1, b2)).eps(eps).weight_decay(lambda));

  Vector m(kN, 0.0), v(kN, 0.0);
  for (int t = 1; t <= kSteps; ++t) {
    // The gradient of ½·0.5·x² + a drifting linear term, at the reference's point.
    Vector g = wave(kN, t);
    for (size_t i = 0; i < kN; ++i) g[i] += 0.5 * x[i];

    ASSERT_TRUE(opt->apply({doubles(g)}));
    q.mutable_grad() = doubles(g);
    adamw.step();

    // torch.optim.AdamW, written out.
    for (size_t i = 0; i < kN; ++i) {
      x[i] *= 1 - lr * lambda;
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double m_hat = m[i] / (1 - std::pow(b1, t));
      const double v_hat = v[i] / (1 - std::pow(b2, t));
      x[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
    const std::string at = "update " + std::to_string(t);
    expect_close(p, x, 1e-10, at + ", downhill vs the AdamW formula");
    expect_close(p, values_of(q), 1e-10, at + ", downhill vs torch::optim::AdamW");
    expect_close(state_of(*opt, "p.m"), m, 1e-10, at + ", m");
    expect_close(state_of(*opt, "p.v"), v, 1e-10, at + ", v");
  }
  EXPECT_EQ(opt->update_count(), kSteps);
}

// =================================================================================
// 2. Weight decay on SGD (each momentum mode) and ADADELTA.
// =================================================================================

TEST(WeightDecay, SgdAddsLearningRateTimesDecayTimesTheParameterBeforeMomentum) {
  const Vector start = {0.5, -1.25, 2.0, 0.75};
  const std::vector<Vector> grads = {
      {1.0, 1.0, -0.5, 1.0}, {2.0, -1.0, 0.0, 0.7}, {3.0, 1.0, 0.3, -1.0}, {-0.5, 0.2, 0.8, 0.1}};
  const double lr = 0.1, lambda = 0.3;
  struct Mode {
    const char* algo;
    double momentum;
    bool nesterov;
  };
  for (const Mode mode : {Mode{"sgd", 0.0, false}, Mode{"sgd", 0.9, false}, Mode{"sgd", 0.9, true},
                          Mode{"nag", 0.8, false}}) {
    for (const bool fused : {true, false}) {
      const std::string what = std::string(mode.algo) + " momentum " +
                               std::to_string(mode.momentum) + (mode.nesterov ? " nesterov" : "") +
                               (fused ? " fused" : " reference");
      auto p = doubles(start);
      auto opt = downhill::build(mode.algo, {{"p", p}},
                                 downhill::Options()
                                     .learning_rate(lr)
                                     .weight_decay(lambda)
                                     .momentum(mode.momentum)
                                     .nesterov(mode.nesterov)
                                     .fused(fused));
      const bool nesterov = mode.nesterov || std::string(mode.algo) == "nag";
      Vector x = start, w(start.size(), 0.0);
      for (size_t t = 0; t < grads.size(); ++t) {
        ASSERT_TRUE(opt->apply({doubles(grads[t])}));
        for (size_t i = 0; i < x.size(); ++i) {
          const double u = lr * grads[t][i] + lr * lambda * x[i];  // x: before the step
          step_with_momentum(x[i], w[i], u, mode.momentum, nesterov);
        }
        expect_close(p, x, 1e-14, what + ", update " + std::to_string(t));
        if (mode.momentum > 0) {
          expect_close(state_of(*opt, "p.velocity"), w, 1e-14, what + ", velocity");
        }
      }
    }
  }
}

// ADADELTA has no learning rate: the decay is λ·p, whatever learning_rate says.
TEST(WeightDecay, AdadeltaAddsDecayTimesTheParameterWithoutALearningRate) {
  const Vector start = {0.5, -1.25, 2.0, 0.75};
  const std::vector<Vector> grads = {
      {1.0, 1.0, -0.5, 1.0}, {2.0, -1.0, 0.0, 0.7}, {3.0, 1.0, 0.3, -1.0}, {-0.5, 0.2, 0.8, 0.1}};
  const double lambda = 0.2, eps = 1e-2, halflife = 2.0;
  const double gamma = std::exp(-std::log(2.0) / halflife);
  for (const bool fused : {true, false}) {
    auto p = doubles(start);
    auto opt = downhill::build("adadelta", {{"p", p}},
                               downhill::Options()
                                   .learning_rate(0.5)
                                   .weight_decay(lambda)
                                   .rms_regularizer(eps)
                                   .rms_halflife(halflife)
                                   .fused(fused));
    Vector x = start, G(start.size(), 0.0), X(start.size(), 0.0);
    for (size_t t = 0; t < grads.size(); ++t) {
      ASSERT_TRUE(opt->apply({doubles(grads[t])}));
      for (size_t i = 0; i < x.size(); ++i) {
        const double g = grads[t][i];
        G[i] = gamma * G[i] + (1 - gamma) * g * g;
        const double u = g * std::sqrt(X[i] + eps) / std::sqrt(G[i] + eps);
        X[i] = gamma * X[i] + (1 - gamma) * u * u;  // the rule's own u, without the decay
        x[i] -= u + lambda * x[i];
      }
      const std::string what =
          std::string(fused ? "fused" : "reference") + ", update " + std::to_string(t);
      expect_close(p, x, 1e-13, what);
      expect_close(state_of(*opt, "p.G"), G, 1e-13, what + ", G");
      expect_close(state_of(*opt, "p.X"), X, 1e-13, what + ", X");
    }
  }
}

// =================================================================================
// 3. Betas in PyTorch's terms.
// =================================================================================

TEST(Betas, BetaSetsTheHalfLifeAndReadsBack) {
  for (const double beta : {0.9, 0.999, 0.5, 0.99}) {
    const auto o1 = downhill::Options().beta1(beta);
    const double halflife = std::log(2.0) / -std::log(beta);
    EXPECT_NEAR(o1.beta1_halflife(), halflife, 1e-15 * halflife) << beta;
    EXPECT_NEAR(o1.beta1(), beta, 1e-15) << beta;
    EXPECT_EQ(o1.beta2_halflife(), downhill::Options().beta2_halflife());  // untouched

    const auto o2 = downhill::Options().beta2(beta);
    EXPECT_NEAR(o2.beta2_halflife(), halflife, 1e-15 * halflife) << beta;
    EXPECT_NEAR(o2.beta2(), beta, 1e-15) << beta;
    EXPECT_EQ(o2.beta1_halflife(), downhill::Options().beta1_halflife());
  }
  // The getters read any half-life: β = exp(−ln 2 / h), so h = 1 is one half.
  EXPECT_NEAR(downhill::Options().beta1_halflife(1.0).beta1(), 0.5, 1e-15);
  EXPECT_NEAR(downhill::Options().beta2_halflife(2.0).beta2(), std::sqrt(0.5), 1e-15);
}

TEST(Betas, BetaOutsideZeroToOneIsRefusedAtOnceWithTheWholeMessage) {
  const std::vector<std::pair<double, std::string>> cases = {
      {0.0, "0"}, {1.0, "1"}, {-0.1, "-0.1"}, {1.5, "1.5"}, {kNaN, "nan"}};
  for (const auto& [beta, text] : cases) {
    downhill::Options o;
    EXPECT_EQ(message_of<std::invalid_argument>([&] { o.beta1(beta); }),
              "downhill: setting beta1 = " + text + " is invalid; allowed: (0, 1)");
    EXPECT_EQ(message_of<std::invalid_argument>([&] { o.beta2(beta); }),
              "downhill: setting beta2 = " + text + " is invalid; allowed: (0, 1)");
    // Nothing was set.
    EXPECT_EQ(o.beta1_halflife(), 7.0);
    EXPECT_EQ(o.beta2_halflife(), 69.0);
  }
}

// =================================================================================
// 4. Global-norm clipping.
// =================================================================================

// Three float64 parameters of different shapes, and gradients with a large global norm:
// ‖ga‖ = 13, ‖gb‖ = 5, ‖gc‖ = √1.5.
struct ThreeParams {
  Vector a0 = {1.0, -2.0, 0.5};
  Vector b0 = {0.25, 1.5, -0.75, 2.0};
  Vector c0 = {0.3, -1.1, 0.8, 1.7, -0.4, 0.9};
  std::vector<std::vector<int64_t>> shapes = {{3}, {2, 2}, {2, 3, 1}};
  std::vector<Vector> grads = {
      {3.0, -4.0, 12.0}, {1.0, 2.0, -2.0, 4.0}, {0.5, -0.5, 0.5, -0.5, 0.5, 0.5}};

  std::vector<Vector> starts() const { return {a0, b0, c0}; }
  std::vector<torch::Tensor> fresh() const {
    return {doubles(a0, shapes[0]), doubles(b0, shapes[1]), doubles(c0, shapes[2])};
  }
  std::vector<torch::Tensor> gradient_tensors(double factor = 1.0) const {
    std::vector<torch::Tensor> out;
    for (size_t k = 0; k < grads.size(); ++k) out.push_back(doubles(grads[k], shapes[k]) * factor);
    return out;
  }
};

double norm_of(const Vector& g) {
  double sum = 0;
  for (double x : g) sum += x * x;
  return std::sqrt(sum);
}

// p ← p − lr·g·s for every element, with one scale s per parameter.
std::vector<Vector> sgd_step(const std::vector<Vector>& starts, const std::vector<Vector>& grads,
                             double lr, const Vector& scales) {
  std::vector<Vector> out = starts;
  for (size_t k = 0; k < out.size(); ++k) {
    for (size_t i = 0; i < out[k].size(); ++i) out[k][i] -= lr * (grads[k][i] * scales[k]);
  }
  return out;
}

std::unique_ptr<downhill::Optimizer> build_three(const std::vector<torch::Tensor>& p,
                                                 downhill::Options options) {
  return downhill::build("sgd", {{"a", p[0]}, {"b", p[1]}, {"c", p[2]}}, options);
}

TEST(GlobalNorm, SgdIsClipGradNormThenTheStep) {
  const ThreeParams setup;
  const double lr = 0.1, c = 3.0;
  for (const bool fused : {true, false}) {
    auto p = setup.fresh();
    auto opt = build_three(
        p, downhill::Options().learning_rate(lr).max_gradient_global_norm(c).fused(fused));
    ASSERT_TRUE(opt->apply(setup.gradient_tensors()));

    // torch::nn::utils::clip_grad_norm_ on copies of the gradients.
    std::vector<torch::Tensor> copies;
    for (const auto& g : setup.gradient_tensors()) {
      auto holder = torch::zeros_like(g).requires_grad_(true);
      holder.mutable_grad() = g.clone();
      copies.push_back(holder);
    }
    const double torch_norm = torch::nn::utils::clip_grad_norm_(copies, c);
    EXPECT_NEAR(torch_norm, std::sqrt(169.0 + 25.0 + 1.5), 1e-12);
    for (size_t k = 0; k < p.size(); ++k) {
      const auto expected = setup.fresh()[k] - lr * copies[k].grad();
      expect_close(p[k], values_of(expected), 1e-6,
                   std::string(fused ? "fused" : "reference") + " vs clip_grad_norm_, parameter " +
                       std::to_string(k));
    }
  }
}

TEST(GlobalNorm, SgdScalesEveryGradientByExactlyMinOneAndCOverTheNorm) {
  const ThreeParams setup;
  const double lr = 0.1, c = 3.0;
  double sum = 0;
  for (const auto& g : setup.grads) sum += norm_of(g) * norm_of(g);
  const double s = std::min(1.0, c / std::sqrt(sum));
  ASSERT_LT(s, 0.25);
  const auto expected = sgd_step(setup.starts(), setup.grads, lr, {s, s, s});
  for (const bool fused : {true, false}) {
    auto p = setup.fresh();
    auto opt = build_three(
        p, downhill::Options().learning_rate(lr).max_gradient_global_norm(c).fused(fused));
    ASSERT_TRUE(opt->apply(setup.gradient_tensors()));
    for (size_t k = 0; k < p.size(); ++k) {
      expect_close(p[k], expected[k], 1e-14,
                   std::string(fused ? "fused" : "reference") + ", parameter " + std::to_string(k));
    }
  }
}

// max_gradient_norm first, per parameter (a: 13 → 4, b: 5 → 4, c: √1.5 stays), then the
// global norm of the clipped gradients.
TEST(GlobalNorm, AfterPerParameterNormClipping) {
  const ThreeParams setup;
  const double lr = 0.1, c = 3.0, n = 4.0;
  Vector scales;
  double sum = 0;
  for (const auto& g : setup.grads) {
    const double own = std::min(1.0, n / norm_of(g));
    scales.push_back(own);
    sum += (norm_of(g) * own) * (norm_of(g) * own);
  }
  EXPECT_NEAR(sum, 16.0 + 16.0 + 1.5, 1e-12);
  const double global = std::min(1.0, c / std::sqrt(sum));
  for (auto& s : scales) s *= global;
  const auto expected = sgd_step(setup.starts(), setup.grads, lr, scales);
  for (const bool fused : {true, false}) {
    auto p = setup.fresh();
    auto opt = build_three(p, downhill::Options()
                                  .learning_rate(lr)
                                  .max_gradient_norm(n)
                                  .max_gradient_global_norm(c)
                                  .fused(fused));
    ASSERT_TRUE(opt->apply(setup.gradient_tensors()));
    for (size_t k = 0; k < p.size(); ++k) {
      expect_close(p[k], expected[k], 1e-14,
                   std::string(fused ? "fused" : "reference") + ", parameter " + std::to_string(k));
    }
  }
}

// max_gradient_elem first (clamp to ±2), then the global norm of the clamped gradients.
TEST(GlobalNorm, AfterElementClipping) {
  const ThreeParams setup;
  const double lr = 0.1, c = 3.0, e = 2.0;
  std::vector<Vector> clamped = setup.grads;
  double sum = 0;
  for (auto& g : clamped) {
    for (auto& x : g) {
      x = std::clamp(x, -e, e);
      sum += x * x;
    }
  }
  EXPECT_NEAR(sum, 12.0 + 13.0 + 1.5, 1e-12);
  const double s = std::min(1.0, c / std::sqrt(sum));
  const auto expected = sgd_step(setup.starts(), clamped, lr, {s, s, s});
  for (const bool fused : {true, false}) {
    auto p = setup.fresh();
    auto opt = build_three(p, downhill::Options()
                                  .learning_rate(lr)
                                  .max_gradient_elem(e)
                                  .max_gradient_global_norm(c)
                                  .fused(fused));
    ASSERT_TRUE(opt->apply(setup.gradient_tensors()));
    for (size_t k = 0; k < p.size(); ++k) {
      expect_close(p[k], expected[k], 1e-14,
                   std::string(fused ? "fused" : "reference") + ", parameter " + std::to_string(k));
    }
  }
}

// A global norm below c leaves the gradients as they are: the same bits as plain SGD.
TEST(GlobalNorm, AGradientBelowTheLimitIsUnchanged) {
  const ThreeParams setup;
  const double lr = 0.1;
  for (const bool fused : {true, false}) {
    auto clipped = setup.fresh();
    auto plain = setup.fresh();
    auto with_limit = build_three(
        clipped, downhill::Options().learning_rate(lr).max_gradient_global_norm(14.0).fused(fused));
    auto without = build_three(plain, downhill::Options().learning_rate(lr).fused(fused));
    ASSERT_TRUE(with_limit->apply(setup.gradient_tensors()));  // norm √195.5 ≈ 13.98 < 14
    ASSERT_TRUE(without->apply(setup.gradient_tensors()));
    const auto expected = sgd_step(setup.starts(), setup.grads, lr, {1.0, 1.0, 1.0});
    for (size_t k = 0; k < clipped.size(); ++k) {
      EXPECT_TRUE(same(clipped[k], plain[k])) << k;
      EXPECT_EQ(values_of(clipped[k]), expected[k]) << k;
    }
  }
}

// A frozen group's gradient, even a huge one, takes no part in the global norm.
TEST(GlobalNorm, AFrozenGroupsGradientIsNotCounted) {
  const ThreeParams setup;
  const double lr = 0.1, c = 3.0;
  auto p = setup.fresh();
  auto f = doubles({1.0, 2.0});
  const auto f_before = f.clone();
  downhill::Params params{{"a", p[0]}, {"b", p[1]}};
  params.frozen({{"f", f}}).group({{"c", p[2]}}, [](downhill::Options& o) {
    o.learning_rate(0.1);
  });
  auto opt = downhill::build("sgd", params,
                             downhill::Options().learning_rate(lr).max_gradient_global_norm(c));
  auto grads = setup.gradient_tensors();
  ASSERT_TRUE(opt->apply({grads[0], grads[1], doubles({1e3, -1e3}), grads[2]}));
  double sum = 0;
  for (const auto& g : setup.grads) sum += norm_of(g) * norm_of(g);
  const double s = std::min(1.0, c / std::sqrt(sum));
  const auto expected = sgd_step(setup.starts(), setup.grads, lr, {s, s, s});
  for (size_t k = 0; k < p.size(); ++k) {
    expect_close(p[k], expected[k], 1e-14, "parameter " + std::to_string(k));
  }
  EXPECT_TRUE(same(f, f_before));
}

// step() with monitor_gradients: "grad_norm" is the global norm of the raw gradients
// (computed here with autograd on copies), and the update uses the clipped ones.
TEST(GlobalNorm, StepMonitorsTheRawGlobalNorm) {
  const ThreeParams setup;
  const double lr = 0.05, c = 2.0;
  auto loss_of = [](const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& cc) {
    return (a * a * a).sum() * 2.0 + (b.sin() * 5.0).sum() + ((cc - 3.0) * (cc - 3.0)).sum();
  };
  for (const bool with_global : {true, false}) {
    auto p = setup.fresh();
    for (auto& t : p) t.requires_grad_(true);
    auto options = downhill::Options().learning_rate(lr).monitor_gradients(true);
    if (with_global) options.max_gradient_global_norm(c);
    auto opt = downhill::build(
        "sgd",
        [&](const downhill::Batch&) -> downhill::Evaluation { return loss_of(p[0], p[1], p[2]); },
        {{"a", p[0]}, {"b", p[1]}, {"c", p[2]}}, options);

    // The raw gradients, from copies.
    std::vector<torch::Tensor> copies;
    for (const auto& t : setup.fresh()) copies.push_back(t.clone().requires_grad_(true));
    const auto grads = torch::autograd::grad({loss_of(copies[0], copies[1], copies[2])}, copies);
    std::vector<Vector> g;
    double sum = 0;
    for (const auto& t : grads) {
      g.push_back(values_of(t));
      sum += norm_of(g.back()) * norm_of(g.back());
    }

    const auto monitors = opt->step({});
    EXPECT_NEAR(monitors.at("grad(a)"), norm_of(g[0]), 1e-14 * norm_of(g[0]));
    EXPECT_NEAR(monitors.at("grad(b)"), norm_of(g[1]), 1e-14 * norm_of(g[1]));
    EXPECT_NEAR(monitors.at("grad(c)"), norm_of(g[2]), 1e-14 * norm_of(g[2]));
    if (!with_global) {
      EXPECT_FALSE(monitors.contains("grad_norm"));
      continue;
    }
    ASSERT_TRUE(monitors.contains("grad_norm"));
    EXPECT_NEAR(monitors.at("grad_norm"), std::sqrt(sum), 1e-14 * std::sqrt(sum));

    const double s = std::min(1.0, c / std::sqrt(sum));
    ASSERT_LT(s, 1.0);
    const auto expected = sgd_step(setup.starts(), g, lr, {s, s, s});
    for (size_t k = 0; k < p.size(); ++k) {
      expect_close(p[k], expected[k], 1e-14, "parameter " + std::to_string(k));
    }
  }
}

// Float32: the fused kernels and the tensor reference clip to the same bits.
TEST(GlobalNorm, Float32FusedAndReferenceAgreeBitForBit) {
  const ThreeParams setup;
  const std::vector<std::pair<std::string, downhill::GroupSettings>> configurations = {
      {"global only", [](downhill::Options& o) { o.max_gradient_global_norm(3.0); }},
      {"with max_gradient_norm",
       [](downhill::Options& o) { o.max_gradient_global_norm(3.0).max_gradient_norm(4.0); }},
      {"with max_gradient_elem",
       [](downhill::Options& o) { o.max_gradient_global_norm(3.0).max_gradient_elem(2.0); }},
  };
  for (const std::string algo : {"sgd", "adam", "rmsprop"}) {
    for (const auto& [what, configure] : configurations) {
      std::vector<std::vector<torch::Tensor>> params;
      std::vector<std::unique_ptr<downhill::Optimizer>> opts;
      for (const bool fused : {true, false}) {
        std::vector<torch::Tensor> p;
        for (const auto& t : setup.fresh()) p.push_back(t.to(torch::kFloat));
        auto options = downhill::Options().learning_rate(0.01).momentum(0.9).fused(fused);
        configure(options);
        opts.push_back(downhill::build(algo, {{"a", p[0]}, {"b", p[1]}, {"c", p[2]}}, options));
        params.push_back(p);
      }
      for (int t = 0; t < 5; ++t) {
        std::vector<torch::Tensor> grads;
        for (const auto& g : setup.gradient_tensors(1.0 + 0.5 * t)) {
          grads.push_back(g.to(torch::kFloat));
        }
        for (auto& opt : opts) ASSERT_TRUE(opt->apply(grads));
        for (size_t k = 0; k < 3; ++k) {
          EXPECT_TRUE(same(params[0][k], params[1][k]))
              << algo << ", " << what << ", update " << t << ", parameter " << k;
        }
      }
    }
  }
}

// =================================================================================
// 5. Schedules through the optimizer.
// =================================================================================

TEST(ScheduleUpdates, SgdMovesByLearningRateTimesTheFactorTimesTheGradient) {
  const Vector start = {0.5, -1.25, 2.0};
  const double lr = 0.1;
  auto f = [](int t) { return std::pow(0.5, t / 2); };  // step(2, 0.5): 1, 1, ½, ½, ¼, ¼
  for (const double mu : {0.0, 0.9}) {
    for (const bool fused : {true, false}) {
      auto p = doubles(start);
      auto opt = downhill::build(
          "sgd", {{"p", p}},
          downhill::Options().learning_rate(lr).momentum(mu).fused(fused).learning_rate_schedule(
              downhill::schedules::step(2, 0.5)));
      Vector x = start, w(start.size(), 0.0);
      for (int t = 0; t < 6; ++t) {
        EXPECT_EQ(opt->update_count(), t);
        const Vector g = wave(start.size(), t, 2.0);
        ASSERT_TRUE(opt->apply({doubles(g)}));
        for (size_t i = 0; i < x.size(); ++i) {
          step_with_momentum(x[i], w[i], lr * f(t) * g[i], mu, false);
        }
        expect_close(p, x, 1e-14,
                     "momentum " + std::to_string(mu) + (fused ? " fused" : " reference") +
                         ", update " + std::to_string(t));
      }
    }
  }
}

// Adam's m and v see the unscaled update (they are those of Adam without the schedule);
// the parameter moves by f(t)·u.
TEST(ScheduleUpdates, AdamStateSeesTheUnscaledUpdate) {
  const Vector start = {0.5, -1.25, 2.0, 0.1};
  const double lr = 0.01, eps = 1e-8;
  auto f = [](int t) { return std::pow(0.8, t); };
  for (const bool fused : {true, false}) {
    const auto base =
        downhill::Options().learning_rate(lr).beta1(0.9).beta2(0.99).rms_regularizer(eps).fused(
            fused);
    auto p = doubles(start);
    auto plain_p = doubles(start);
    auto scheduled = downhill::build(
        "adam", {{"p", p}},
        downhill::Options(base).learning_rate_schedule(downhill::schedules::exponential(0.8)));
    auto plain = downhill::build("adam", {{"p", plain_p}}, base);
    const double b1 = base.beta1(), b2 = base.beta2();
    Vector x = start, m(start.size(), 0.0), v(start.size(), 0.0);
    for (int t = 0; t < 6; ++t) {
      const Vector g = wave(start.size(), t, 1.5);
      ASSERT_TRUE(scheduled->apply({doubles(g)}));
      ASSERT_TRUE(plain->apply({doubles(g)}));
      for (size_t i = 0; i < x.size(); ++i) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        const double u = lr * (m[i] / (1 - std::pow(b1, t + 1))) /
                         (std::sqrt(v[i] / (1 - std::pow(b2, t + 1))) + eps);
        x[i] -= f(t) * u;
      }
      const std::string what =
          std::string(fused ? "fused" : "reference") + ", update " + std::to_string(t);
      EXPECT_TRUE(same(state_of(*scheduled, "p.m"), state_of(*plain, "p.m"))) << what;
      EXPECT_TRUE(same(state_of(*scheduled, "p.v"), state_of(*plain, "p.v"))) << what;
      expect_close(state_of(*scheduled, "p.m"), m, 1e-13, what + ", m");
      expect_close(state_of(*scheduled, "p.v"), v, 1e-13, what + ", v");
      expect_close(p, x, 1e-12, what);
    }
  }
}

// ADADELTA's X averages the rule's own update, not the scheduled one; the parameter moves by
// f(t)·(u + λ·p).
TEST(ScheduleUpdates, AdadeltaStepAverageSeesTheUnscaledUpdate) {
  const Vector start = {0.5, -1.25, 2.0, 0.75};
  const double lambda = 0.1, eps = 1e-2, halflife = 2.0;
  const double gamma = std::exp(-std::log(2.0) / halflife);
  auto f = [](int t) { return std::pow(0.5, t / 2); };
  auto p = doubles(start);
  auto opt = downhill::build("adadelta", {{"p", p}},
                             downhill::Options()
                                 .weight_decay(lambda)
                                 .rms_regularizer(eps)
                                 .rms_halflife(halflife)
                                 .learning_rate_schedule(downhill::schedules::step(2, 0.5)));
  Vector x = start, G(start.size(), 0.0), X(start.size(), 0.0);
  for (int t = 0; t < 6; ++t) {
    const Vector g = wave(start.size(), t, 2.0);
    ASSERT_TRUE(opt->apply({doubles(g)}));
    for (size_t i = 0; i < x.size(); ++i) {
      G[i] = gamma * G[i] + (1 - gamma) * g[i] * g[i];
      const double u = g[i] * std::sqrt(X[i] + eps) / std::sqrt(G[i] + eps);
      X[i] = gamma * X[i] + (1 - gamma) * u * u;
      x[i] -= f(t) * (u + lambda * x[i]);
    }
    const std::string what = "update " + std::to_string(t);
    expect_close(state_of(*opt, "p.X"), X, 1e-13, what + ", X");
    expect_close(p, x, 1e-13, what);
  }
}

// A schedule value that is negative or NaN at t = 2: apply() throws, and the parameters,
// the state and the update count stay as they were.
TEST(ScheduleUpdates, AnInvalidFactorThrowsAndChangesNothing) {
  const std::vector<std::pair<double, std::string>> cases = {
      {-1.0, "-1"}, {kNaN, "nan"}, {std::numeric_limits<double>::infinity(), "inf"}};
  for (const auto& [bad, text] : cases) {
    const double bad_value = bad;
    auto p = doubles({0.5, -1.25, 2.0});
    auto opt =
        downhill::build("adam", {{"p", p}},
                        downhill::Options().learning_rate(0.1).momentum(0.5).learning_rate_schedule(
                            [bad_value](int64_t t) { return t == 2 ? bad_value : 1.0; }));
    ASSERT_TRUE(opt->apply({doubles({1.0, -2.0, 0.5})}));
    ASSERT_TRUE(opt->apply({doubles({0.5, 1.0, -1.5})}));
    const auto params_before = p.clone();
    const auto state_before = snapshot(*opt);
    ASSERT_EQ(state_before.size(), 3u);  // m, v, velocity

    EXPECT_EQ(message_of<std::invalid_argument>([&] {
                opt->apply({doubles({2.0, 2.0, 2.0})});
              }),
              "downhill: learning_rate_schedule(2) = " + text +
                  "; allowed: a finite number >= 0 (no update was applied)");
    EXPECT_TRUE(same(p, params_before)) << text;
    expect_same_state(*opt, state_before);
    EXPECT_EQ(opt->update_count(), 2);
  }
}

// The same through step(), and with the bad factor in group 1: group 0, whose schedule is
// fine and which comes first, is not updated either.
TEST(ScheduleUpdates, AnInvalidFactorInGroupOneThroughStepChangesNoGroup) {
  auto w = doubles({0.5, -1.25}).requires_grad_(true);
  auto b = doubles({2.0, 0.75, -0.3}).requires_grad_(true);
  downhill::Params params{{"w", w}};
  params.group({{"b", b}}, [](downhill::Options& o) {
    o.learning_rate_schedule([](int64_t t) { return t == 2 ? kNaN : 0.5; });
  });
  auto opt = downhill::build(
      "sgd",
      [&](const downhill::Batch&) -> downhill::Evaluation {
        return (w * w).sum() + (b * b * b).sum();
      },
      params, downhill::Options().learning_rate(0.1).momentum(0.9));
  opt->step({});
  opt->step({});
  const auto w_before = w.detach().clone();
  const auto b_before = b.detach().clone();
  const auto state_before = snapshot(*opt);
  const auto message = message_of<std::invalid_argument>([&] { opt->step({}); });
  EXPECT_THAT(message, HasSubstr("downhill: learning_rate_schedule(2) = nan"));
  EXPECT_THAT(message, HasSubstr("allowed: a finite number >= 0 (no update was applied)"));
  EXPECT_TRUE(same(w.detach(), w_before));
  EXPECT_TRUE(same(b.detach(), b_before));
  expect_same_state(*opt, state_before);
  EXPECT_EQ(opt->update_count(), 2);
}

// =================================================================================
// 6. Parameter groups.
// =================================================================================

const Vector kW0 = {0.5, -1.25, 2.0, 0.75};
const Vector kB0 = {0.3, -0.6, 1.1};

// Two groups ≡ two optimizers, one per group, bit for bit, through apply().
void expect_groups_are_separate_optimizers(const std::string& algo, const downhill::Options& base,
                                           const downhill::GroupSettings& group_one) {
  auto w = doubles(kW0), b = doubles(kB0);
  downhill::Params params{{"w", w}};
  params.group({{"b", b}}, group_one);
  auto grouped = downhill::build(algo, params, base);

  auto w_alone = doubles(kW0), b_alone = doubles(kB0);
  auto b_options = base;
  group_one(b_options);
  auto opt_w = downhill::build(algo, {{"w", w_alone}}, base);
  auto opt_b = downhill::build(algo, {{"b", b_alone}}, b_options);
  EXPECT_EQ(grouped->group_options(1).learning_rate(), b_options.learning_rate());

  for (int t = 0; t < 20; ++t) {
    const auto gw = doubles(wave(kW0.size(), t, 1.0, 0.2));
    const auto gb = doubles(wave(kB0.size(), t, 3.0, 1.1));
    ASSERT_TRUE(grouped->apply({gw, gb}));
    ASSERT_TRUE(opt_w->apply({gw}));
    ASSERT_TRUE(opt_b->apply({gb}));
    ASSERT_TRUE(same(w, w_alone)) << algo << ", update " << t;
    ASSERT_TRUE(same(b, b_alone)) << algo << ", update " << t;
  }
  // The state is named per parameter, and is each separate optimizer's.
  auto expected_names = state_names(*opt_w);
  for (const auto& name : state_names(*opt_b)) expected_names.push_back(name);
  EXPECT_EQ(state_names(*grouped), expected_names);
  for (const auto& [name, tensor] : opt_w->state()) {
    EXPECT_TRUE(same(state_of(*grouped, name), tensor)) << name;
  }
  for (const auto& [name, tensor] : opt_b->state()) {
    EXPECT_TRUE(same(state_of(*grouped, name), tensor)) << name;
  }
}

TEST(ParameterGroups, SgdGroupsAreSeparateOptimizersThroughApply) {
  expect_groups_are_separate_optimizers(
      "sgd", downhill::Options().learning_rate(0.1).momentum(0.9),
      [](downhill::Options& o) { o.learning_rate(0.01).nesterov(true).weight_decay(0.1); });
  // The names the brief promises.
  auto w = doubles(kW0), b = doubles(kB0);
  downhill::Params params{{"w", w}};
  params.group({{"b", b}}, [](downhill::Options& o) { o.learning_rate(0.01); });
  auto opt = downhill::build("sgd", params, downhill::Options().learning_rate(0.1).momentum(0.9));
  EXPECT_EQ(state_names(*opt), (std::vector<std::string>{"w.velocity", "b.velocity"}));
}

TEST(ParameterGroups, AdamGroupsAreSeparateOptimizersThroughApply) {
  expect_groups_are_separate_optimizers(
      "adam", downhill::Options().learning_rate(0.01).beta1(0.9).beta2(0.99).rms_regularizer(1e-8),
      [](downhill::Options& o) { o.rms_regularizer(1e-3).beta1(0.8).learning_rate(0.05); });
}

TEST(ParameterGroups, GroupsWithOwnClippingAndScheduleAreSeparateOptimizers) {
  expect_groups_are_separate_optimizers(
      "rmsprop", downhill::Options().learning_rate(0.01).momentum(0.5).max_gradient_norm(0.7),
      [](downhill::Options& o) {
        o.max_gradient_norm(0)
            .max_gradient_elem(0.4)
            .rms_halflife(3)
            .fused(false)
            .learning_rate_schedule(downhill::schedules::exponential(0.9));
      });
}

// The same through step() with one loss for the grouped optimizer and its two parts for
// the separate ones.
TEST(ParameterGroups, SgdGroupsAreSeparateOptimizersThroughStep) {
  auto loss_w = [](const torch::Tensor& w) {
    return (w * w * w * 0.1).sum() + ((w - 0.3) * (w - 0.3)).sum();
  };
  auto loss_b = [](const torch::Tensor& b) { return (b.sin() * 2.0).sum() + (b * b).sum(); };
  auto group_one = [](downhill::Options& o) {
    o.learning_rate(0.01).nesterov(true).weight_decay(0.1);
  };
  const auto base = downhill::Options().learning_rate(0.1).momentum(0.9);

  auto w = doubles(kW0).requires_grad_(true), b = doubles(kB0).requires_grad_(true);
  downhill::Params params{{"w", w}};
  params.group({{"b", b}}, group_one);
  auto grouped = downhill::build(
      "sgd", [&](const downhill::Batch&) -> downhill::Evaluation { return loss_w(w) + loss_b(b); },
      params, base);

  auto w_alone = doubles(kW0).requires_grad_(true), b_alone = doubles(kB0).requires_grad_(true);
  auto b_options = base;
  group_one(b_options);
  auto opt_w = downhill::build(
      "sgd", [&](const downhill::Batch&) -> downhill::Evaluation { return loss_w(w_alone); },
      {{"w", w_alone}}, base);
  auto opt_b = downhill::build(
      "sgd", [&](const downhill::Batch&) -> downhill::Evaluation { return loss_b(b_alone); },
      {{"b", b_alone}}, b_options);

  for (int t = 0; t < 20; ++t) {
    grouped->step({});
    opt_w->step({});
    opt_b->step({});
    ASSERT_TRUE(same(w.detach(), w_alone.detach())) << "update " << t;
    ASSERT_TRUE(same(b.detach(), b_alone.detach())) << "update " << t;
  }
  EXPECT_EQ(state_names(*grouped), (std::vector<std::string>{"w.velocity", "b.velocity"}));
  EXPECT_TRUE(same(state_of(*grouped, "w.velocity"), state_of(*opt_w, "w.velocity")));
  EXPECT_TRUE(same(state_of(*grouped, "b.velocity"), state_of(*opt_b, "b.velocity")));
}

// A frozen group's tensor keeps its bits, with weight decay and momentum on the other group,
// whether its gradient is undefined or given; its state stays zero.
TEST(ParameterGroups, AFrozenTensorNeverChanges) {
  const double lr = 0.1, lambda = 0.2, mu = 0.9;
  auto w = doubles(kW0), f = doubles(kB0);
  const auto f_before = f.clone();
  downhill::Params params{{"w", w}};
  params.frozen({{"f", f}});
  auto opt = downhill::build(
      "sgd", params, downhill::Options().learning_rate(lr).weight_decay(lambda).momentum(mu));
  EXPECT_EQ(opt->params().group_count(), 2u);
  EXPECT_TRUE(opt->params().is_frozen(1));
  Vector x = kW0, v(kW0.size(), 0.0);
  for (int t = 0; t < 6; ++t) {
    const Vector g = wave(kW0.size(), t);
    const auto gf = t % 2 == 0 ? torch::Tensor() : doubles(wave(kB0.size(), t, 5.0));
    ASSERT_TRUE(opt->apply({doubles(g), gf}));
    for (size_t i = 0; i < x.size(); ++i) {
      step_with_momentum(x[i], v[i], lr * g[i] + lr * lambda * x[i], mu, false);
    }
    expect_close(w, x, 1e-14, "update " + std::to_string(t));
    ASSERT_TRUE(same(f, f_before)) << "update " << t;
  }
  for (const auto& [name, tensor] : opt->state()) {
    if (name.rfind("f.", 0) == 0) {
      EXPECT_TRUE(same(tensor, torch::zeros_like(tensor))) << name;
    }
  }
}

// A frozen tensor that does not require grad works with step(); the loss uses it.
TEST(ParameterGroups, AFrozenTensorWithoutGradWorksWithStep) {
  const double lr = 0.1, lambda = 0.5, mu = 0.5;
  auto w = doubles(kW0).requires_grad_(true);
  auto f = doubles({1.0, 2.0, -1.0, 0.5});  // no grad
  const auto f_before = f.clone();
  downhill::Params params{{"w", w}};
  params.frozen({{"f", f}});
  auto opt = downhill::build(
      "sgd",
      [&](const downhill::Batch&) -> downhill::Evaluation { return ((w - f) * (w - f)).sum(); },
      params, downhill::Options().learning_rate(lr).weight_decay(lambda).momentum(mu));
  const Vector target = values_of(f);
  Vector x = kW0, v(kW0.size(), 0.0);
  for (int t = 0; t < 5; ++t) {
    const auto monitors = opt->step({});
    double loss = 0;
    for (size_t i = 0; i < x.size(); ++i) loss += (x[i] - target[i]) * (x[i] - target[i]);
    EXPECT_NEAR(monitors.at("loss"), loss, 1e-14 * loss);
    for (size_t i = 0; i < x.size(); ++i) {
      const double g = 2 * (x[i] - target[i]);
      step_with_momentum(x[i], v[i], lr * g + lr * lambda * x[i], mu, false);
    }
    expect_close(w.detach(), x, 1e-14, "update " + std::to_string(t));
    ASSERT_TRUE(same(f, f_before));
  }
  EXPECT_EQ(opt->update_count(), 5);
}

TEST(ParameterGroups, ALoopSettingInAGroupIsRefused) {
  auto w = doubles(kW0), b = doubles(kB0);
  downhill::Params params{{"w", w}};
  params.group({{"b", b}}, [](downhill::Options& o) { o.patience(3); });
  EXPECT_EQ(message_of<std::invalid_argument>([&] { downhill::build("sgd", params); }),
            "downhill: parameter group 1 changes patience (5 to 3), a setting of the whole "
            "optimizer; a group may change: learning_rate, momentum, nesterov, "
            "max_gradient_norm, max_gradient_elem, rms_halflife, rms_regularizer, "
            "rprop_increase, rprop_decrease, rprop_min_step, rprop_max_step, beta1_halflife, "
            "beta2_halflife, weight_decay, learning_rate_schedule, fused");
}

TEST(ParameterGroups, AnInvalidValueInAGroupIsRefusedNamingTheGroup) {
  auto w = doubles(kW0), b = doubles(kB0), c = doubles({1.0});
  downhill::Params params{{"w", w}};
  params.group({{"b", b}}, [](downhill::Options& o) { o.learning_rate(-1); });
  EXPECT_EQ(message_of<std::invalid_argument>([&] { downhill::build("sgd", params); }),
            "downhill: parameter group 1: setting learning_rate = -1 is invalid; allowed: a "
            "finite number > 0");

  downhill::Params two{{"w", w}};
  two.group({{"b", b}}, [](downhill::Options& o) { o.learning_rate(0.5); })
      .group({{"c", c}}, [](downhill::Options& o) { o.momentum(1.5); });
  EXPECT_EQ(message_of<std::invalid_argument>([&] { downhill::build("sgd", two); }),
            "downhill: parameter group 2: setting momentum = 1.5 is invalid; allowed: [0, 1)");
}

TEST(ParameterGroups, EntriesThatAlreadyHaveGroupsAreRefused) {
  auto w = doubles(kW0), b = doubles(kB0), c = doubles({1.0});
  downhill::Params inner{{"b", b}};
  inner.group({{"c", c}}, [](downhill::Options& o) { o.learning_rate(0.5); });
  downhill::Params params{{"w", w}};
  const auto message = message_of<std::invalid_argument>(
      [&] { params.group(inner, [](downhill::Options& o) { o.learning_rate(0.1); }); });
  EXPECT_THAT(message, HasSubstr("downhill: "));
  EXPECT_THAT(message, HasSubstr("2 groups"));
  EXPECT_THAT(message_of<std::invalid_argument>([&] { params.frozen(inner); }),
              HasSubstr("2 groups"));
  EXPECT_EQ(params.group_count(), 1u);  // nothing appended
  EXPECT_EQ(params.size(), 1u);
}

// =================================================================================
// 7. Live settings.
// =================================================================================

TEST(LiveSettings, ANewLearningRateTakesEffectAtTheNextUpdate) {
  const Vector start = {1.0, -2.0, 3.0};
  auto p = doubles(start);
  auto opt =
      downhill::build("sgd", {{"p", p}}, downhill::Options().learning_rate(0.1).momentum(0.5));
  Vector x = start, w(start.size(), 0.0);
  double lr = 0.1, mu = 0.5;
  for (int t = 0; t < 6; ++t) {
    if (t == 3) {
      opt->change_options([](downhill::Options& o) { o.learning_rate(0.02); });
      lr = 0.02;
      EXPECT_EQ(opt->options().learning_rate(), 0.02);
      expect_close(p, x, 0.0, "the change alone moves nothing");
    }
    if (t == 4) {
      opt->change_options([](downhill::Options& o) { o.momentum(0.8); });  // on stays on
      mu = 0.8;
    }
    const Vector g = wave(start.size(), t, 2.0);
    ASSERT_TRUE(opt->apply({doubles(g)}));
    for (size_t i = 0; i < x.size(); ++i) step_with_momentum(x[i], w[i], lr * g[i], mu, false);
    expect_close(p, x, 1e-14, "update " + std::to_string(t));
  }
}

TEST(LiveSettings, ChangingOneGroupChangesOnlyThatGroup) {
  auto w = doubles(kW0), b = doubles(kB0);
  downhill::Params params{{"w", w}};
  params.group({{"b", b}}, [](downhill::Options& o) { o.learning_rate(0.01); });
  auto opt = downhill::build("sgd", params, downhill::Options().learning_rate(0.1));
  opt->change_options(1, [](downhill::Options& o) { o.learning_rate(0.5).weight_decay(0.2); });
  EXPECT_EQ(opt->group_options(0).learning_rate(), 0.1);
  EXPECT_EQ(opt->options().learning_rate(), 0.1);
  EXPECT_EQ(opt->group_options(0).weight_decay(), 0.0);
  EXPECT_EQ(opt->group_options(1).learning_rate(), 0.5);
  EXPECT_EQ(opt->group_options(1).weight_decay(), 0.2);

  const Vector gw = wave(kW0.size(), 0), gb = wave(kB0.size(), 1);
  ASSERT_TRUE(opt->apply({doubles(gw), doubles(gb)}));
  Vector xw = kW0, xb = kB0;
  for (size_t i = 0; i < xw.size(); ++i) xw[i] -= 0.1 * gw[i];
  for (size_t i = 0; i < xb.size(); ++i) xb[i] -= 0.5 * gb[i] + 0.5 * 0.2 * xb[i];
  expect_close(w, xw, 1e-14, "w");
  expect_close(b, xb, 1e-14, "b");

  // A change to every group reaches group 1 too.
  opt->change_options([](downhill::Options& o) { o.learning_rate(o.learning_rate() * 2); });
  EXPECT_EQ(opt->group_options(0).learning_rate(), 0.2);
  EXPECT_EQ(opt->group_options(1).learning_rate(), 1.0);
}

TEST(LiveSettings, AnInvalidValueIsRefusedNamingTheSettingAndNothingChanges) {
  const Vector start = {1.0, -2.0, 3.0};
  auto p = doubles(start);
  auto q = doubles({0.5});
  downhill::Params params{{"p", p}};
  params.group({{"q", q}}, [](downhill::Options& o) { o.learning_rate(0.01); });
  auto opt = downhill::build("sgd", params, downhill::Options().learning_rate(0.1).momentum(0.5));

  EXPECT_EQ(message_of<std::invalid_argument>(
                [&] { opt->change_options([](downhill::Options& o) { o.learning_rate(-1); }); }),
            "downhill: change_options: setting learning_rate = -1 is invalid; allowed: a finite "
            "number > 0");
  EXPECT_EQ(message_of<std::invalid_argument>(
                [&] { opt->change_options([](downhill::Options& o) { o.momentum(1.0); }); }),
            "downhill: change_options: setting momentum = 1 is invalid; allowed: [0, 1)");
  EXPECT_EQ(message_of<std::invalid_argument>(
                [&] { opt->change_options([](downhill::Options& o) { o.weight_decay(-0.5); }); }),
            "downhill: change_options: setting weight_decay = -0.5 is invalid; allowed: a finite "
            "number >= 0");
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                opt->change_options(1, [](downhill::Options& o) { o.rms_regularizer(-1); });
              }),
              HasSubstr("setting rms_regularizer = -1 is invalid"));
  // All or nothing: valid for group 0 (0.1 − 0.05), not for group 1 (0.01 − 0.05).
  const auto message = message_of<std::invalid_argument>([&] {
    opt->change_options(
        [](downhill::Options& o) { o.learning_rate(o.learning_rate() - 0.05).momentum(0.6); });
  });
  EXPECT_THAT(message, HasSubstr("group 1"));
  EXPECT_THAT(message, HasSubstr("setting learning_rate = -0.04 is invalid"));

  EXPECT_EQ(opt->group_options(0).learning_rate(), 0.1);
  EXPECT_EQ(opt->group_options(0).momentum(), 0.5);
  EXPECT_EQ(opt->group_options(0).weight_decay(), 0.0);
  EXPECT_EQ(opt->group_options(1).learning_rate(), 0.01);
  EXPECT_EQ(opt->group_options(1).momentum(), 0.5);
  EXPECT_EQ(opt->group_options(1).rms_regularizer(), 1e-8);

  // The next update uses the settings as they were.
  const Vector g = {1.0, 0.5, -2.0};
  ASSERT_TRUE(opt->apply({doubles(g), doubles({4.0})}));
  Vector x = start;
  for (size_t i = 0; i < x.size(); ++i) x[i] -= 0.1 * g[i];  // w = −u, p ← p + w
  expect_close(p, x, 1e-15, "p");
  expect_close(q, {0.5 - 0.01 * 4.0}, 1e-15, "q");
}

TEST(LiveSettings, TheAlgorithmCannotChange) {
  auto p = doubles({1.0, 2.0});
  auto opt = downhill::build("sgd", {{"p", p}}, downhill::Options().learning_rate(0.1));
  EXPECT_THAT(message_of<std::invalid_argument>(
                  [&] { opt->change_options([](downhill::Options& o) { o.algo("adam"); }); }),
              HasSubstr("algo cannot change"));
  EXPECT_EQ(opt->name(), "SGD");
}

// The refusal names the optimizer's algorithm, which build() took as its argument.
TEST(LiveSettings, TheAlgorithmRefusalNamesTheOptimizersAlgorithm) {
  auto p = doubles({1.0, 2.0});
  auto opt = downhill::build("sgd", {{"p", p}}, downhill::Options().learning_rate(0.1));
  const auto message = message_of<std::invalid_argument>(
      [&] { opt->change_options([](downhill::Options& o) { o.algo("adam"); }); });
  EXPECT_THAT(message, Not(HasSubstr("rmsprop"))) << "an SGD optimizer";
  // Setting algo to the optimizer's own algorithm is no change.
  EXPECT_NO_THROW(opt->change_options([](downhill::Options& o) { o.algo("sgd"); }));
}

TEST(LiveSettings, MomentumCannotBeTurnedOnOrOff) {
  auto p = doubles({1.0, 2.0});
  auto off = downhill::build("sgd", {{"p", p}}, downhill::Options().learning_rate(0.1));
  EXPECT_THAT(message_of<std::invalid_argument>(
                  [&] { off->change_options([](downhill::Options& o) { o.momentum(0.5); }); }),
              HasSubstr("momentum cannot be turned on"));
  EXPECT_EQ(off->options().momentum(), 0.0);

  auto q = doubles({1.0, 2.0});
  auto on =
      downhill::build("sgd", {{"q", q}}, downhill::Options().learning_rate(0.1).momentum(0.5));
  EXPECT_THAT(message_of<std::invalid_argument>(
                  [&] { on->change_options([](downhill::Options& o) { o.momentum(0); }); }),
              HasSubstr("momentum cannot be turned off"));
  EXPECT_EQ(on->options().momentum(), 0.5);

  // In one group, too.
  auto w = doubles(kW0), b = doubles(kB0);
  downhill::Params params{{"w", w}};
  params.group({{"b", b}}, [](downhill::Options& o) { o.learning_rate(0.01); });
  auto grouped = downhill::build("sgd", params, downhill::Options().learning_rate(0.1));
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                grouped->change_options(1, [](downhill::Options& o) { o.momentum(0.5); });
              }),
              HasSubstr("momentum cannot be turned on"));
  EXPECT_EQ(grouped->group_options(1).momentum(), 0.0);
}

// Turning momentum on from 0 is refused; the message must not offer another value in
// (0, 1), which would turn it on just the same.
TEST(LiveSettings, TheMomentumOnRefusalOffersOnlyZero) {
  auto p = doubles({1.0, 2.0});
  auto off = downhill::build("sgd", {{"p", p}}, downhill::Options().learning_rate(0.1));
  const auto message = message_of<std::invalid_argument>(
      [&] { off->change_options([](downhill::Options& o) { o.momentum(0.5); }); });
  EXPECT_THAT(message, HasSubstr("momentum cannot be turned on"));
  EXPECT_THAT(message, Not(HasSubstr("another value in (0, 1)")));
}

TEST(LiveSettings, AFrozenGroupCannotChangeAndOtherGroupsCan) {
  auto w = doubles(kW0), f = doubles(kB0);
  const auto f_before = f.clone();
  downhill::Params params{{"w", w}};
  params.frozen({{"f", f}});
  auto opt = downhill::build("sgd", params, downhill::Options().learning_rate(0.1));
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                opt->change_options(1, [](downhill::Options& o) { o.learning_rate(0.5); });
              }),
              HasSubstr("frozen"));
  // A change of every group is fine; the frozen group stays frozen.
  opt->change_options([](downhill::Options& o) { o.learning_rate(0.2).weight_decay(0.1); });
  EXPECT_EQ(opt->options().learning_rate(), 0.2);
  const Vector g = wave(kW0.size(), 3);
  ASSERT_TRUE(opt->apply({doubles(g), doubles(wave(kB0.size(), 1))}));
  Vector x = kW0;
  for (size_t i = 0; i < x.size(); ++i) x[i] -= 0.2 * g[i] + 0.2 * 0.1 * x[i];
  expect_close(w, x, 1e-14, "w");
  EXPECT_TRUE(same(f, f_before));
}

TEST(LiveSettings, ALoopSettingCannotChangeInOneGroup) {
  auto w = doubles(kW0), b = doubles(kB0);
  downhill::Params params{{"w", w}};
  params.group({{"b", b}}, [](downhill::Options& o) { o.learning_rate(0.01); });
  auto opt = downhill::build("sgd", params, downhill::Options().learning_rate(0.1));
  EXPECT_THAT(message_of<std::invalid_argument>(
                  [&] { opt->change_options(1, [](downhill::Options& o) { o.patience(2); }); }),
              HasSubstr("patience"));
  EXPECT_EQ(opt->options().patience(), 5);
  // For every group at once, a loop setting may change.
  opt->change_options([](downhill::Options& o) { o.patience(2); });
  EXPECT_EQ(opt->options().patience(), 2);
}

TEST(LiveSettings, AGroupThatDoesNotExistIsOutOfRange) {
  auto p = doubles({1.0, 2.0});
  auto opt = downhill::build("sgd", {{"p", p}}, downhill::Options().learning_rate(0.1));
  EXPECT_NO_THROW((void)opt->group_options(0));
  EXPECT_THROW((void)opt->group_options(1), std::out_of_range);
  EXPECT_THROW((void)opt->group_options(99), std::out_of_range);
  EXPECT_THROW(opt->change_options(99, [](downhill::Options& o) { o.learning_rate(0.5); }),
               std::out_of_range);
  EXPECT_EQ(opt->options().learning_rate(), 0.1);
}

}  // namespace
