// Every algorithm on the 2-D Rosenbrock function
//   f(x, y) = (1 − x)² + 100·(y − x²)²,
// from the classic start (−1.2, 1), through Optimizer::step(). The loss needs no
// data, so each step gets an empty batch. Prints one row per algorithm: updates,
// final loss and distance to the minimum (1, 1).
#include <downhill/downhill.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

struct Run {
  std::string algo;
  downhill::Options options;
};

}  // namespace

int main() {
  constexpr int kUpdates = 5000;
  // Settings chosen by hand for this start and a budget of 5000 updates (a
  // sweep over rates 1e-3..3 with and without momentum 0.9). The valley is about
  // 1000 times more curved across than along, so plain gradient steps need a
  // small rate (SGD diverges above ~2e-3) and momentum to travel along it. The
  // adaptive methods normalize the gradient: RProp and RMSProp take 1e-3;
  // ADAGRAD (0.3), ESGD (0.1) and ADADELTA (which has no learning rate) crawl
  // without momentum, so they get momentum 0.9; Adam takes 1e-2.
  const std::vector<Run> runs = {
      {"sgd", downhill::Options().learning_rate(1e-3).momentum(0.9)},
      {"nag", downhill::Options().learning_rate(1e-3).momentum(0.9).max_gradient_norm(1)},
      {"rprop", downhill::Options().learning_rate(1e-3)},
      {"rmsprop", downhill::Options().learning_rate(1e-3)},
      {"adagrad", downhill::Options().learning_rate(0.3).momentum(0.9)},
      {"adadelta", downhill::Options().momentum(0.9)},
      {"esgd", downhill::Options().learning_rate(0.1).momentum(0.9)},
      {"adam", downhill::Options().learning_rate(1e-2)},
  };

  // The checks at the end: every algorithm cuts the loss at least 100-fold from
  // its start, (1 + 1.2)² + 100·(1 − 1.44)² = 24.2 (the slowest here, ADADELTA,
  // ends near 3e-3), and NAG (the seed's check) ends within 1e-2 of the minimum (1, 1).
  constexpr double kInitialLoss = 24.2, kLossFactor = 100, kNagTolerance = 1e-2;
  bool ok = true;

  torch::manual_seed(0);  // ESGD draws its probe vectors from LibTorch's generator
  downhill::logger()->set_level(spdlog::level::warn);
  std::printf("%-10s %8s %14s %14s\n", "algorithm", "updates", "final loss", "distance");
  for (const auto& [algo, options] : runs) {
    auto xy = torch::tensor({-1.2, 1.0}, torch::dtype(torch::kFloat64).requires_grad(true));
    auto rosenbrock = [&](const downhill::Batch&) -> downhill::Evaluation {
      auto x = xy[0], y = xy[1];
      return (1 - x).square() + 100 * (y - x.square()).square();
    };
    auto opt = downhill::build(algo, rosenbrock, {{"xy", xy}}, options);
    for (int i = 0; i < kUpdates; ++i) opt->step({});

    torch::NoGradGuard no_grad;
    const double loss = rosenbrock({}).loss.item<double>();
    const double distance = (xy - torch::ones_like(xy)).norm().item<double>();
    std::printf("%-10s %8lld %14.6e %14.6e\n", opt->name().c_str(),
                static_cast<long long>(opt->update_count()), loss, distance);

    if (!(loss < kInitialLoss / kLossFactor)) {  // written so that a NaN fails too
      std::fprintf(stderr, "rosenbrock: %s lowered the loss only from %g to %g, not %g-fold\n",
                   opt->name().c_str(), kInitialLoss, loss, kLossFactor);
      ok = false;
    }
    if (algo == "nag" && !(distance < kNagTolerance)) {
      std::fprintf(stderr, "rosenbrock: NAG ended %g from (1, 1), not within %g\n", distance,
                   kNagTolerance);
      ok = false;
    }
  }
  return ok ? 0 : 1;
}
