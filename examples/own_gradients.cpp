// Your own gradients, without autograd: the parameters and their gradient live in your own
// buffers (here std::vector<double>; Eigen's and Armadillo's data() work alike), wrapped as
// tensors by torch::from_blob without a copy. SGD with momentum updates them by apply(), in
// place in your buffer; L-BFGS, whose update evaluates the loss several times, takes a loss
// that returns its value and your gradient (Evaluation::with_gradients). The problem is the
// extended Rosenbrock function in 100 dimensions, with its gradient written by hand
// (docs/guide.md, "Your own gradients").
#include <downhill/downhill.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

constexpr int64_t kDimensions = 100;

// f(x) = Σ 100 (x[2i+1] − x[2i]²)² + (1 − x[2i])², and its gradient into `gradient`.
double rosenbrock(const std::vector<double>& x, std::vector<double>& gradient) {
  double f = 0.0;
  for (size_t i = 0; i < x.size(); i += 2) {
    const double a = x[i], b = x[i + 1];
    const double bend = b - a * a;
    f += 100.0 * bend * bend + (1.0 - a) * (1.0 - a);
    gradient[i] = -400.0 * a * bend - 2.0 * (1.0 - a);
    gradient[i + 1] = 200.0 * bend;
  }
  return f;
}

}  // namespace

int main() {
  std::vector<double> x(kDimensions), gradient(kDimensions);
  for (size_t i = 0; i < x.size(); i += 2) {
    x[i] = -1.2;  // the classic start, in every pair
    x[i + 1] = 1.0;
  }
  // Tensors over the buffers: no copy, and x is updated where it lies.
  const auto as_tensor = [](std::vector<double>& buffer) {
    return torch::from_blob(buffer.data(), {static_cast<int64_t>(buffer.size())}, torch::kDouble);
  };
  const torch::Tensor x_tensor = as_tensor(x);
  const torch::Tensor gradient_tensor = as_tensor(gradient);
  auto opt = downhill::build("sgd", {{"x", x_tensor}},
                             downhill::Options().learning_rate(1e-3).momentum(0.9));

  double f = rosenbrock(x, gradient);
  const double initial = f;
  int64_t updates = 0;
  for (; updates < 100000; ++updates) {
    const double largest =
        std::abs(*std::max_element(gradient.begin(), gradient.end(),
                                   [](double a, double b) { return std::abs(a) < std::abs(b); }));
    if (largest <= 1e-6) break;
    opt->apply({gradient_tensor});  // x ← x + velocity, in x's own memory
    f = rosenbrock(x, gradient);    // the gradient at the new x, into its buffer
  }
  std::printf("f = %.3g after %lld updates (from %.3g); x[0] = %.9f, read from the vector\n", f,
              static_cast<long long>(updates), initial, x[0]);

  // The minimum is x = 1 everywhere, f = 0; the gradient's bound 1e-6 puts x within ~1e-6 of it.
  const bool converged =
      f < 1e-9 && std::abs(x[0] - 1.0) < 1e-5 && x_tensor.data_ptr<double>() == x.data();
  if (!converged) {
    std::fprintf(stderr, "own_gradients: f = %g, x[0] = %.9f after %lld updates\n", f, x[0],
                 static_cast<long long>(updates));
    return 1;
  }

  // The same problem by L-BFGS, from the same start: the loss returns f and the gradient it
  // wrote into your buffer, and minimize() runs it until the largest gradient element is
  // within 1e-6 (gradient_tolerance; one batch of everything, a loss of no data). The step
  // tolerance is off, so that the gradient's is the one that stops it.
  for (size_t i = 0; i < x.size(); i += 2) {
    x[i] = -1.2;
    x[i + 1] = 1.0;
  }
  auto lbfgs = downhill::build(
      "lbfgs",
      [&](const downhill::Batch&) {
        const double value = rosenbrock(x, gradient);
        return downhill::Evaluation::with_gradients(value, {gradient_tensor});
      },
      {{"x", x_tensor}}, downhill::Options().gradient_tolerance(1e-6).step_tolerance(0));
  downhill::Dataset nothing(downhill::Batch{});
  lbfgs->minimize(nothing);
  const auto run = lbfgs->last_run();
  const double f_lbfgs = rosenbrock(x, gradient);
  std::printf("L-BFGS: f = %.3g after %lld updates and %lld evaluations; x[0] = %.9f\n", f_lbfgs,
              static_cast<long long>(run.updates), static_cast<long long>(run.loss_evaluations),
              x[0]);
  if (!(f_lbfgs < 1e-9 && std::abs(x[0] - 1.0) < 1e-5) ||
      run.stop != downhill::StopReason::kGradientTolerance) {
    std::fprintf(stderr, "own_gradients: L-BFGS ended at f = %g (%s)\n", f_lbfgs,
                 std::string(downhill::to_string(run.stop)).c_str());
    return 1;
  }
  return 0;
}
