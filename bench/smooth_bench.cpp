// Smooth deterministic problems (bench/smooth_problems.h) to 1e-6 of their minimum: downhill's
// L-BFGS (autograd, through minimize()) against LBFGS++ (hand-written gradients, Eigen, its
// strong-Wolfe line search, m = 10), and downhill's L-BFGS given the same hand-written
// gradients (Evaluation::with_gradients) on the 100-D Rosenbrock function. One thread,
// float64; the sides alternate within each round; each time is a run's own wall time until its
// first evaluation at most f* + 1e-6. torch.optim.LBFGS runs in bench/smooth_run.sh beside it.
//
// usage: smooth_bench ROUNDS   (prints "SIDE PROBLEM EVALUATIONS SECONDS" per run)
#include <LBFGS.h>
#include <downhill/downhill.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <Eigen/Core>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "smooth_problems.h"

namespace {

using Clock = std::chrono::steady_clock;
using Eigen::VectorXd;

// Thrown by a loss that reached the target: the run ends there.
struct Reached {};

// A problem's loss and gradient written by hand, for LBFGS++ and with_gradients().
using HandLoss = std::function<double(const double* x, double* gradient)>;

HandLoss rosenbrock_by_hand(int64_t n) {
  return [n](const double* x, double* g) {
    double f = 0;
    for (int64_t i = 0; i < n; i += 2) {
      const double bend = x[i + 1] - x[i] * x[i];
      f += 100 * bend * bend + (1 - x[i]) * (1 - x[i]);
      g[i] = -400 * x[i] * bend - 2 * (1 - x[i]);
      g[i + 1] = 200 * bend;
    }
    return f;
  };
}

double softplus(double z) { return z > 20 ? z : std::log1p(std::exp(z)); }

HandLoss logistic_by_hand(int64_t samples, int64_t features) {
  const auto [x_tensor, y_tensor] = smooth::logistic_data(samples, features);
  const Eigen::MatrixXd x = Eigen::Map<const Eigen::Matrix<double, -1, -1, Eigen::RowMajor>>(
      x_tensor.data_ptr<double>(), samples, features);
  const VectorXd y = Eigen::Map<const VectorXd>(y_tensor.data_ptr<double>(), samples);
  return [x, y, samples, features](const double* w, double* g) {
    const VectorXd z = x * Eigen::Map<const VectorXd>(w, features);
    double f = 0;
    VectorXd residual(samples);
    for (int64_t i = 0; i < samples; ++i) {
      f += softplus(z[i]) - y[i] * z[i];
      residual[i] = 1 / (1 + std::exp(-z[i])) - y[i];
    }
    Eigen::Map<VectorXd>(g, features) = x.transpose() * residual / double(samples);
    return f / double(samples);
  };
}

HandLoss oscillator_by_hand() {
  const auto [t_tensor, y_tensor] = smooth::oscillator_data(500);
  const std::vector<double> t(t_tensor.data_ptr<double>(), t_tensor.data_ptr<double>() + 500);
  const std::vector<double> y(y_tensor.data_ptr<double>(), y_tensor.data_ptr<double>() + 500);
  return [t, y](const double* p, double* g) {
    double f = 0;
    g[0] = g[1] = g[2] = g[3] = 0;
    const double n = double(t.size());
    for (size_t i = 0; i < t.size(); ++i) {
      const double decay = std::exp(-p[1] * t[i]);
      const double angle = p[2] * t[i] + p[3];
      const double model = p[0] * decay * std::cos(angle);
      const double r = model - y[i];
      f += r * r;
      g[0] += 2 * r * decay * std::cos(angle) / n;
      g[1] += 2 * r * (-t[i]) * model / n;
      g[2] += 2 * r * (-p[0] * decay * std::sin(angle) * t[i]) / n;
      g[3] += 2 * r * (-p[0] * decay * std::sin(angle)) / n;
    }
    return f / n;
  };
}

struct Case {
  smooth::Problem problem;
  HandLoss by_hand;
  double minimum = 0;  // f*, found by a tight run when not known
};

struct Result {
  int64_t evaluations = 0;
  double seconds = 0;
};

// Times downhill's L-BFGS on `loss` over `params` until the loss throws Reached, through
// minimize() or, `by_step`, step() called in a loop of one's own; the tolerances off, so that
// only the target ends the run.
template <typename LossFunction>
double time_downhill(LossFunction loss, downhill::Params params, bool by_step = false) {
  auto opt =
      downhill::build("lbfgs", std::move(loss), std::move(params),
                      downhill::Options().gradient_tolerance(0).step_tolerance(0).patience(100000));
  downhill::Dataset nothing(downhill::Batch{});
  const auto began = Clock::now();
  try {
    if (by_step) {
      for (;;) opt->step({});  // until the loss throws Reached
    } else {
      opt->minimize(nothing);
    }
  } catch (const Reached&) {
  }
  return std::chrono::duration<double>(Clock::now() - began).count();
}

// downhill's L-BFGS with autograd.
Result downhill_autograd(const Case& c, double target) {
  auto x = c.problem.start.clone().requires_grad_(true);
  Result result;
  result.seconds = time_downhill(
      [&](const downhill::Batch&) -> downhill::Evaluation {
        ++result.evaluations;
        auto loss = c.problem.loss(x);
        if (loss.item<double>() <= target) throw Reached{};
        return loss;
      },
      {{"x", x}});
  return result;
}

// downhill's L-BFGS given the gradient written by hand into a buffer (with_gradients).
Result downhill_by_hand(const Case& c, double target, bool by_step = false) {
  const auto n = c.problem.start.numel();
  std::vector<double> x(c.problem.start.data_ptr<double>(), c.problem.start.data_ptr<double>() + n);
  std::vector<double> gradient(static_cast<size_t>(n));
  const auto x_tensor = torch::from_blob(x.data(), {n}, torch::kDouble);
  const auto gradient_tensor = torch::from_blob(gradient.data(), {n}, torch::kDouble);
  Result result;
  result.seconds = time_downhill(
      [&](const downhill::Batch&) {
        ++result.evaluations;
        const double f = c.by_hand(x.data(), gradient.data());
        if (f <= target) throw Reached{};
        return downhill::Evaluation::with_gradients(f, {gradient_tensor});
      },
      {{"x", x_tensor}}, by_step);
  return result;
}

// LBFGS++ with its Nocedal-Wright (strong Wolfe) line search and 10 pairs.
Result lbfgspp(const Case& c, double target) {
  LBFGSpp::LBFGSParam<double> param;
  param.m = 10;
  param.epsilon = 1e-300;  // the target ends the run
  param.epsilon_rel = 0;
  param.max_iterations = 100000;
  param.max_linesearch = 25;
  param.linesearch = LBFGSpp::LBFGS_LINESEARCH_BACKTRACKING_STRONG_WOLFE;
  LBFGSpp::LBFGSSolver<double, LBFGSpp::LineSearchNocedalWright> solver(param);
  const auto n = c.problem.start.numel();
  VectorXd x = Eigen::Map<const VectorXd>(c.problem.start.data_ptr<double>(), n);
  Result result;
  auto objective = [&](const VectorXd& at, VectorXd& gradient) {
    ++result.evaluations;
    const double f = c.by_hand(at.data(), gradient.data());
    if (f <= target) throw Reached{};
    return f;
  };
  double f = 0;
  const auto began = Clock::now();
  try {
    solver.minimize(objective, x, f);
  } catch (const Reached&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "LBFGS++ on %s: %s\n", c.problem.name.c_str(), e.what());
    result.evaluations = -result.evaluations;
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - began).count();
  return result;
}

// f*: the least loss a tight downhill run reaches.
double minimum_of(const smooth::Problem& problem) {
  auto x = problem.start.clone().requires_grad_(true);
  auto opt = downhill::build(
      "lbfgs", [&](const downhill::Batch&) -> downhill::Evaluation { return problem.loss(x); },
      {{"x", x}}, downhill::Options().gradient_tolerance(1e-11).step_tolerance(0).patience(1000));
  downhill::Dataset nothing(downhill::Batch{});
  opt->minimize(nothing);
  return problem.loss(x).item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  at::set_num_threads(1);
  downhill::logger()->set_level(spdlog::level::warn);
  std::vector<Case> cases{{smooth::rosenbrock_2d(), rosenbrock_by_hand(2), 0.0},
                          {smooth::rosenbrock_100d(), rosenbrock_by_hand(100), 0.0},
                          {smooth::logistic(5000, 50), logistic_by_hand(5000, 50)},
                          {smooth::oscillator(), oscillator_by_hand()}};
  for (auto& c : cases) {
    if (c.problem.name.rfind("rosenbrock", 0) != 0) c.minimum = minimum_of(c.problem);
    std::printf("minimum %s %.17g\n", c.problem.name.c_str(), c.minimum);
  }
  for (int round = 0; round < rounds; ++round) {
    for (const auto& c : cases) {
      const double target = c.minimum + 1e-6;
      const auto print = [&](const char* side, const Result& r) {
        std::printf("%s %s %lld %.9g\n", side, c.problem.name.c_str(),
                    static_cast<long long>(r.evaluations), r.seconds);
      };
      // The order of the sides turns each round.
      if (round % 2 == 0) {
        print("downhill", downhill_autograd(c, target));
        print("lbfgspp", lbfgspp(c, target));
        print("downhill_by_hand", downhill_by_hand(c, target));
        print("downhill_by_hand_step", downhill_by_hand(c, target, true));
      } else {
        print("downhill_by_hand_step", downhill_by_hand(c, target, true));
        print("downhill_by_hand", downhill_by_hand(c, target));
        print("lbfgspp", lbfgspp(c, target));
        print("downhill", downhill_autograd(c, target));
      }
    }
    std::fflush(stdout);
  }
  return 0;
}
