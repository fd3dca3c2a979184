#pragma once
// The smooth deterministic problems of the L-BFGS tests and benchmark, as bench/smooth_peer.py
// writes them for torch.optim.LBFGS: the same functions, data and starts, in float64. Each is
// a loss of one parameter vector x, written with tensor operations (for autograd).

#include <torch/torch.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace smooth {

struct Problem {
  std::string name;
  torch::Tensor start;
  std::function<torch::Tensor(const torch::Tensor&)> loss;
};

inline Problem rosenbrock_2d() {
  return {"rosenbrock_2d", torch::tensor({-1.5, 2.0}, torch::kDouble), [](const torch::Tensor& x) {
            return (1 - x[0]).pow(2) + 100 * (x[1] - x[0].pow(2)).pow(2);
          }};
}

inline Problem rosenbrock_100d() {
  std::vector<double> start;
  for (int pair = 0; pair < 50; ++pair) {
    start.push_back(-1.2);
    start.push_back(1.0);
  }
  return {"rosenbrock_100d", torch::tensor(start, torch::kDouble), [](const torch::Tensor& x) {
            const auto a = x.slice(0, 0, x.size(0), 2);
            const auto b = x.slice(0, 1, x.size(0), 2);
            return (100 * (b - a * a).pow(2) + (1 - a).pow(2)).sum();
          }};
}

/// Features x[i][j] = sin(1.7 i + 2.3 j + 0.013 i j), labels 1 where x[i]·cos(0..p) plus the
/// "noise" 0.5 sin(7.1 i) is positive.
inline std::pair<torch::Tensor, torch::Tensor> logistic_data(int64_t samples, int64_t features) {
  const auto options = torch::TensorOptions().dtype(torch::kDouble);
  const auto i = torch::arange(samples, options).unsqueeze(1);
  const auto j = torch::arange(features, options).unsqueeze(0);
  const auto x = torch::sin(1.7 * i + 2.3 * j + 0.013 * i * j);
  const auto w = torch::cos(torch::arange(features, options));
  const auto noise = 0.5 * torch::sin(7.1 * torch::arange(samples, options));
  const auto y = (x.matmul(w) + noise).gt(0).to(torch::kDouble);
  return {x, y};
}

/// The mean logistic loss of weights w (no intercept).
inline Problem logistic(int64_t samples, int64_t features) {
  auto [x, y] = logistic_data(samples, features);
  return {"logistic_" + std::to_string(samples) + "x" + std::to_string(features),
          torch::zeros({features}, torch::kDouble), [x, y](const torch::Tensor& w) {
            const auto z = x.matmul(w);
            return (torch::softplus(z) - y * z).mean();
          }};
}

/// 500 samples of 1.5 e^(−0.3t) cos(2.5t + 0.4) on [0, 10], plus 0.05 sin(37t).
inline std::pair<torch::Tensor, torch::Tensor> oscillator_data(int64_t points) {
  const auto t = torch::linspace(0, 10, points, torch::kDouble);
  const auto clean = 1.5 * torch::exp(-0.3 * t) * torch::cos(2.5 * t + 0.4);
  return {t, clean + 0.05 * torch::sin(37.0 * t)};
}

/// The mean squared error of a damped oscillator's amplitude, damping, frequency and phase.
inline Problem oscillator() {
  auto [t, y] = oscillator_data(500);
  return {"oscillator", torch::tensor({1.0, 0.2, 2.4, 0.0}, torch::kDouble),
          [t, y](const torch::Tensor& p) {
            const auto model = p[0] * torch::exp(-p[1] * t) * torch::cos(p[2] * t + p[3]);
            return (model - y).pow(2).mean();
          }};
}

}  // namespace smooth
