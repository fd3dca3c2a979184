// L-BFGS held to arithmetic written here: its direction is the two-loop recursion over the
// curvature pairs it keeps, every step it takes satisfies both strong-Wolfe conditions, its
// first step is min(1, 1/|g|₁)·g, it stops on its tolerances, resumes bit for bit, takes
// gradients from the loss function, and refuses what has no meaning for it.
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using downhill::Options;
using downhill::StopReason;
using downhill::testing::message_of;
using ::testing::HasSubstr;
using Vector = std::vector<double>;

// The extended Rosenbrock function f(x) = Σ 100 (x[2i+1] − x[2i]²)² + (1 − x[2i])², its
// gradient, and the same as a tensor expression for autograd.
double rosenbrock(const Vector& x, Vector* gradient = nullptr) {
  double f = 0;
  if (gradient) gradient->assign(x.size(), 0.0);
  for (size_t i = 0; i + 1 < x.size(); i += 2) {
    const double bend = x[i + 1] - x[i] * x[i];
    f += 100 * bend * bend + (1 - x[i]) * (1 - x[i]);
    if (gradient) {
      (*gradient)[i] = -400 * x[i] * bend - 2 * (1 - x[i]);
      (*gradient)[i + 1] = 200 * bend;
    }
  }
  return f;
}

torch::Tensor rosenbrock(const torch::Tensor& x) {
  const auto a = x.slice(0, 0, x.size(0), 2);
  const auto b = x.slice(0, 1, x.size(0), 2);
  return (100 * (b - a * a).pow(2) + (1 - a).pow(2)).sum();
}

double dot(const Vector& a, const Vector& b) {
  double sum = 0;
  for (size_t j = 0; j < a.size(); ++j) sum += a[j] * b[j];
  return sum;
}

Vector values(const torch::Tensor& t) {
  const auto flat = t.detach().to(torch::kDouble).contiguous().view(-1);
  return Vector(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
}

// The state tensor named `name` ("x.s").
torch::Tensor named(const downhill::NamedTensors& state, const std::string& name) {
  for (const auto& [key, tensor] : state) {
    if (key == name) return tensor;
  }
  ADD_FAILURE() << "no state tensor " << name;
  return {};
}

// Row r of a [rows, n] state tensor.
Vector row(const torch::Tensor& pairs, int64_t r) { return values(pairs[r]); }

// Nocedal & Wright's Algorithm 7.4: d = −H g from the pairs (oldest first), with H₀ = γI,
// γ = sᵀy / yᵀy of the newest pair (1 without pairs).
Vector two_loop(const Vector& g, const std::vector<Vector>& s, const std::vector<Vector>& y) {
  Vector q(g.size());
  for (size_t j = 0; j < g.size(); ++j) q[j] = -g[j];
  std::vector<double> alpha(s.size());
  for (size_t k = s.size(); k-- > 0;) {
    alpha[k] = dot(s[k], q) / dot(y[k], s[k]);
    for (size_t j = 0; j < q.size(); ++j) q[j] -= alpha[k] * y[k][j];
  }
  const double gamma = s.empty() ? 1.0 : dot(s.back(), y.back()) / dot(y.back(), y.back());
  for (auto& v : q) v *= gamma;
  for (size_t k = 0; k < s.size(); ++k) {
    const double beta = dot(y[k], q) / dot(y[k], s[k]);
    for (size_t j = 0; j < q.size(); ++j) q[j] += (alpha[k] - beta) * s[k][j];
  }
  return q;
}

// An L-BFGS optimizer over x on the extended Rosenbrock function, stepped by hand.
struct RosenbrockRun {
  explicit RosenbrockRun(Vector start, Options options = {}) {
    x = torch::tensor(start, torch::dtype(torch::kDouble)).requires_grad_(true);
    opt = downhill::build(
        "lbfgs",
        [this](const downhill::Batch&) -> downhill::Evaluation {
          ++calls;
          return rosenbrock(x);
        },
        {{"x", x}}, std::move(options));
  }
  Vector position() const { return values(x); }
  torch::Tensor x;
  std::unique_ptr<downhill::Optimizer> opt;
  int64_t calls = 0;
  const downhill::Batch batch{};
};

TEST(Lbfgs, DirectionIsTheTwoLoopRecursionOverThePairsItKeeps) {
  // Three pairs kept of the 6-D function: by the fifth update the oldest have been dropped.
  RosenbrockRun run({-1.2, 1.0, -0.5, 0.8, 0.3, -0.4}, Options().set("lbfgs_history", 3));
  for (int update = 0; update < 12; ++update) {
    const Vector x0 = run.position();
    Vector g0;
    rosenbrock(x0, &g0);
    const auto state = run.opt->state();
    std::vector<Vector> s, y;
    for (int64_t r = 0; r < 3; ++r) {  // oldest first; an empty row is no pair yet
      const Vector sr = row(named(state, "x.s"), r);
      if (dot(sr, sr) == 0) continue;
      s.push_back(sr);
      y.push_back(row(named(state, "x.y"), r));
    }
    EXPECT_EQ(s.size(), static_cast<size_t>(std::min(update, 3)));
    const Vector d = two_loop(g0, s, y);
    run.opt->step(run.batch);
    const Vector x1 = run.position();
    Vector step(x0.size());
    for (size_t j = 0; j < x0.size(); ++j) step[j] = x1[j] - x0[j];
    // The step is t·d for the t the line search chose.
    const double t = dot(step, d) / dot(d, d);
    EXPECT_GT(t, 0) << "update " << update;
    for (size_t j = 0; j < d.size(); ++j) {
      EXPECT_NEAR(step[j], t * d[j], 1e-9 * std::sqrt(dot(step, step))) << "update " << update;
    }
    // The newest pair is (t·d, g₁ − g₀).
    Vector g1;
    rosenbrock(x1, &g1);
    const auto after = run.opt->state();
    const Vector s_new = row(named(after, "x.s"), 2);
    const Vector y_new = row(named(after, "x.y"), 2);
    for (size_t j = 0; j < d.size(); ++j) {
      EXPECT_NEAR(s_new[j], step[j], 1e-12 * (1 + std::abs(step[j])));
      EXPECT_NEAR(y_new[j], g1[j] - g0[j], 1e-9 * (1 + std::abs(g1[j] - g0[j])));
    }
  }
}

TEST(Lbfgs, EveryStepSatisfiesBothStrongWolfeConditions) {
  for (const Vector& start : {Vector{-1.5, 2.0}, [] {
                                Vector x;
                                for (int pair = 0; pair < 50; ++pair)
                                  x.insert(x.end(), {-1.2, 1.0});
                                return x;
                              }()}) {
    // step_tolerance(0): no stop on a tiny slope gᵀd (PyTorch's), so that the run goes on to
    // a gradient of 1e-7.
    RosenbrockRun run(start, Options().step_tolerance(0));
    int checked = 0;
    for (int update = 0; update < 200; ++update) {
      const Vector x0 = run.position();
      Vector g0;
      const double f0 = rosenbrock(x0, &g0);
      if (std::abs(*std::max_element(g0.begin(), g0.end(), [](double a, double b) {
            return std::abs(a) < std::abs(b);
          })) <= 1e-7) {
        break;
      }
      run.opt->step(run.batch);
      const Vector x1 = run.position();
      Vector step(x0.size()), g1;
      for (size_t j = 0; j < x0.size(); ++j) step[j] = x1[j] - x0[j];
      const double f1 = rosenbrock(x1, &g1);
      const double slope0 = dot(g0, step);  // t·gᵀd: the conditions scaled by t > 0
      ASSERT_LT(slope0, 0) << "update " << update << " of " << start.size() << "-D";
      // Within rounding of f: the last steps' decreases are at the scale of f's last bits.
      EXPECT_LE(f1, f0 + 1e-4 * slope0 + 1e-15 * std::abs(f0))
          << "sufficient decrease, update " << update << " of " << start.size() << "-D";
      EXPECT_LE(std::abs(dot(g1, step)), 0.9 * std::abs(slope0) + 1e-15)
          << "curvature, update " << update << " of " << start.size() << "-D";
      ++checked;
    }
    EXPECT_GT(checked, 20);
    EXPECT_LT(rosenbrock(run.position()), 1e-12);
  }
}

TEST(Lbfgs, FirstStepIsTheGradientScaledToUnitL1NormOrLess) {
  // With the fixed step (no line search), the first update is x − min(1, 1/|g|₁)·lr·g.
  const Vector start{-1.5, 2.0};
  Vector g;
  rosenbrock(start, &g);
  const double scale = std::min(1.0, 1.0 / (std::abs(g[0]) + std::abs(g[1]))) * 0.5;
  RosenbrockRun run(start, Options().set("lbfgs_line_search", "none").learning_rate(0.5));
  run.opt->step(run.batch);
  const Vector x = run.position();
  EXPECT_DOUBLE_EQ(x[0], start[0] - scale * g[0]);
  EXPECT_DOUBLE_EQ(x[1], start[1] - scale * g[1]);
  // One evaluation at the start, one at the point of the fixed step.
  EXPECT_EQ(run.calls, 2);
}

TEST(Lbfgs, ConvergesWithTheFixedStepOnAQuadratic) {
  // f = Σ a_j x_j² / 2 with curvatures 1..4: L-BFGS with unit steps reaches the minimum.
  auto x = torch::tensor({1.0, -2.0, 3.0, -4.0}, torch::dtype(torch::kDouble)).requires_grad_(true);
  const auto a = torch::tensor({1.0, 2.0, 3.0, 4.0}, torch::kDouble);
  auto opt = downhill::build(
      "lbfgs",
      [&](const downhill::Batch&) -> downhill::Evaluation { return 0.5 * (a * x * x).sum(); },
      {{"x", x}}, Options().set("lbfgs_line_search", "none").step_tolerance(0));
  for (int update = 0; update < 30; ++update) opt->step({});
  EXPECT_LT(x.detach().abs().max().item<double>(), 1e-8);
}

TEST(Lbfgs, MinimizeStopsAtTheGradientToleranceWithEachPointEvaluatedOnce) {
  // One batch of everything: the validations are the points the updates start from, and
  // the line search's end point is the next update's start, so the loss is evaluated once
  // per point tried, as many times as stepping by hand.
  RosenbrockRun by_hand({-1.5, 2.0}, Options().step_tolerance(0));
  int64_t updates = 0;
  for (; updates < 1000; ++updates) {
    Vector g;
    rosenbrock(by_hand.position(), &g);
    if (std::max(std::abs(g[0]), std::abs(g[1])) <= 1e-5) break;
    by_hand.opt->step(by_hand.batch);
  }
  RosenbrockRun looped({-1.5, 2.0},
                       Options().gradient_tolerance(1e-5).step_tolerance(0).validate_every(1));
  downhill::Dataset nothing(downhill::Batch{});
  looped.opt->minimize(nothing);
  const auto run = looped.opt->last_run();
  EXPECT_EQ(run.stop, StopReason::kGradientTolerance);
  // The tolerance is checked at the point an update ends at: the update that reaches it is
  // the last, one fewer than the hand loop's count of updates before the check holds.
  EXPECT_EQ(run.updates, updates);
  EXPECT_EQ(looped.calls, by_hand.calls);
  EXPECT_EQ(run.loss_evaluations, looped.calls);
  EXPECT_EQ(run.gradient_evaluations, looped.calls);
  EXPECT_EQ(looped.position(), by_hand.position());
  Vector g;
  rosenbrock(looped.position(), &g);
  EXPECT_LE(std::max(std::abs(g[0]), std::abs(g[1])), 1e-5);
  EXPECT_NEAR(run.gradient_norm, std::sqrt(dot(g, g)), 1e-12);
}

TEST(Lbfgs, TakesTheGradientsTheLossReturns) {
  // The loss returns its value and a gradient it wrote into a buffer of its own, wrapped
  // without a copy, the parameters being another such buffer. The gradient is autograd's of
  // the same expression here, so that both runs see the same bits: the same iterates and
  // evaluations as autograd's path, bit for bit.
  Vector start;
  for (int pair = 0; pair < 50; ++pair) start.insert(start.end(), {-1.2, 1.0});
  Vector x = start, gradient(x.size());
  const auto x_tensor = torch::from_blob(x.data(), {100}, torch::kDouble);
  const auto gradient_tensor = torch::from_blob(gradient.data(), {100}, torch::kDouble);
  int64_t calls = 0;
  auto own = downhill::build(
      "lbfgs",
      [&](const downhill::Batch&) {
        ++calls;
        const auto leaf = x_tensor.clone().requires_grad_(true);
        const auto f = rosenbrock(leaf);
        gradient_tensor.copy_(torch::autograd::grad({f}, {leaf})[0]);
        return downhill::Evaluation::with_gradients(f.detach(), {gradient_tensor});
      },
      {{"x", x_tensor}}, Options());
  RosenbrockRun autograd(start);
  for (int update = 0; update < 40; ++update) {
    own->step({});
    autograd.opt->step(autograd.batch);
  }
  EXPECT_EQ(calls, autograd.calls);
  EXPECT_EQ(x, autograd.position());
  EXPECT_LT(rosenbrock(x), 1e-10);
  EXPECT_EQ(x_tensor.data_ptr<double>(), x.data());  // updated where it lies
}

TEST(Lbfgs, ResumesBitForBit) {
  downhill::testing::TemporaryFolder folder("lbfgs_resume");
  const auto path = folder.file("run.ckpt");
  const Vector start{-1.5, 2.0};
  const auto options = [] {
    return Options().gradient_tolerance(0).step_tolerance(0).patience(100);
  };
  downhill::Dataset nothing(downhill::Batch{});
  RosenbrockRun straight(start, options().max_passes(14));
  straight.opt->minimize(nothing);
  RosenbrockRun first(start, options().max_passes(6).checkpoint(path));
  first.opt->minimize(nothing);
  RosenbrockRun second(start, options().max_passes(14).checkpoint(path).resume(true));
  second.opt->minimize(nothing);
  EXPECT_TRUE(torch::equal(second.x, straight.x));
  const auto a = second.opt->state(), b = straight.opt->state();
  EXPECT_TRUE(torch::equal(named(a, "x.s"), named(b, "x.s")));
  EXPECT_TRUE(torch::equal(named(a, "x.y"), named(b, "x.y")));
  EXPECT_EQ(second.opt->update_count(), straight.opt->update_count());
}

TEST(Lbfgs, WorksInFloat32) {
  auto x = torch::tensor({-1.5f, 2.0f}).requires_grad_(true);
  auto opt = downhill::build(
      "lbfgs", [&](const downhill::Batch&) -> downhill::Evaluation { return rosenbrock(x); },
      {{"x", x}}, Options().gradient_tolerance(1e-3));
  downhill::Dataset nothing(downhill::Batch{});
  opt->minimize(nothing);
  // Near the minimum float32 steps may round to no move at all: the step tolerance stops it.
  EXPECT_THAT(opt->last_run().stop,
              ::testing::AnyOf(StopReason::kGradientTolerance, StopReason::kStepTolerance));
  EXPECT_NEAR(x[0].item<double>(), 1.0, 1e-3);
  EXPECT_NEAR(x[1].item<double>(), 1.0, 2e-3);
}

TEST(Lbfgs, BacksOffFromPointsWhereTheLossIsNotFinite) {
  // f = (x − 3)² where x < 2.5 and NaN beyond: the first try (x = 0 + 1·6·min(1, 1/6) = 1)
  // is finite; later tries past 2.5 are not, and the parameters never hold them.
  auto x = torch::zeros({1}, torch::dtype(torch::kDouble)).requires_grad_(true);
  auto opt = downhill::build(
      "lbfgs",
      [&](const downhill::Batch&) -> downhill::Evaluation {
        const auto f = (x - 3).pow(2).sum();
        return x.item<double>() < 2.5 ? f : f * std::nan("");
      },
      {{"x", x}}, Options().learning_rate(10));
  for (int update = 0; update < 10; ++update) {
    opt->step({});
    ASSERT_TRUE(std::isfinite(x.item<double>()));
    ASSERT_LT(x.item<double>(), 2.5);
  }
  EXPECT_GT(x.item<double>(), 2.0);
}

TEST(Lbfgs, SkipsAPairWithoutUpwardCurvatureAndSaysSoOnce) {
  // f = cos x from x = 0.1 with the fixed step 1: g = −sin x, and the first step is
  // min(1, 1/|g|)·g = −g, so x₁ = 0.1 + sin 0.1, x₂ = x₁ + sin x₁ (no pair kept, so d = −g).
  // f curves downward there (f'' = −cos x < 0): sᵀy < 0 at both steps.
  auto x = torch::full({1}, 0.1, torch::dtype(torch::kDouble)).requires_grad_(true);
  auto opt = downhill::build(
      "lbfgs", [&](const downhill::Batch&) -> downhill::Evaluation { return x.cos().sum(); },
      {{"x", x}}, Options().set("lbfgs_line_search", "none").step_tolerance(0));
  downhill::testing::LogCapture capture;
  opt->step({});
  const double x1 = 0.1 + std::sin(0.1);
  EXPECT_DOUBLE_EQ(x.item<double>(), x1);
  opt->step({});
  EXPECT_DOUBLE_EQ(x.item<double>(), x1 + std::sin(x1));
  EXPECT_EQ(named(opt->state(), "x.s").abs().sum().item<double>(), 0.0);
  const std::string log = capture.text();
  EXPECT_THAT(log, HasSubstr("a curvature pair with s'y"));
  EXPECT_EQ(log.find("a curvature pair"), log.rfind("a curvature pair"));  // once
}

TEST(Lbfgs, RefusesWhatHasNoMeaningForIt) {
  const auto loss = [](const downhill::Batch&) -> downhill::Evaluation {
    return torch::zeros({1});
  };
  const auto x = [] { return torch::zeros({2}).requires_grad_(true); };
  const auto build = [&](Options options) {
    return downhill::build("lbfgs", loss, {{"x", x()}}, std::move(options));
  };
  EXPECT_THAT(message_of<std::invalid_argument>([&] { build(Options().momentum(0.9)); }),
              HasSubstr("setting momentum = 0.9 is not taken by L-BFGS"));
  EXPECT_THAT(message_of<std::invalid_argument>([&] { build(Options().weight_decay(0.1)); }),
              HasSubstr("setting weight_decay = 0.1 is not taken by L-BFGS"));
  EXPECT_THAT(message_of<std::invalid_argument>([&] { build(Options().max_gradient_norm(1)); }),
              HasSubstr("max_gradient_norm"));
  EXPECT_THAT(message_of<std::invalid_argument>([&] { build(Options().accumulate(2)); }),
              HasSubstr("setting accumulate = 2 is not taken by L-BFGS"));
  EXPECT_THAT(message_of<std::invalid_argument>(
                  [&] { build(Options().learning_rate_schedule([](int64_t) { return 1.0; })); }),
              HasSubstr("learning_rate_schedule"));
  EXPECT_THAT(message_of<std::invalid_argument>([&] { build(Options().set("wolfe_c2", 1e-5)); }),
              HasSubstr("wolfe_c2"));
  // Groups with settings of their own, and mixed dtypes.
  downhill::Params grouped({{"a", x()}});
  grouped.group({{"b", x()}}, [](Options& o) { o.learning_rate(0.1); });
  EXPECT_THAT(message_of<std::invalid_argument>(
                  [&] { downhill::build("lbfgs", loss, grouped, Options()); }),
              HasSubstr("parameter group 1"));
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                downhill::build(
                    "lbfgs", loss,
                    {{"a", x()}, {"b", torch::zeros({2}, torch::kDouble).requires_grad_(true)}},
                    Options());
              }),
              HasSubstr("of one dtype"));
  // Changed later, as at build.
  auto opt = build(Options());
  EXPECT_THAT(message_of<std::invalid_argument>(
                  [&] { opt->change_options([](Options& o) { o.momentum(0.5); }); }),
              HasSubstr("momentum"));
  // apply() cannot evaluate the loss along a line.
  EXPECT_THAT(message_of<std::logic_error>([&] { opt->apply({torch::ones({2})}); }),
              HasSubstr("L-BFGS cannot apply(grads)"));
}

}  // namespace
