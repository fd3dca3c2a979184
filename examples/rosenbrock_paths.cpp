// The paths of the eight built-in algorithms on the 2-D Rosenbrock function
//   f(x, y) = (1 − x)² + 100·(y − x²)²,
// from (−3, −3), as the original downhill's documentation drew them. Each algorithm runs
// Optimizer::step() with an empty batch (the loss needs no data) and the position after
// every update goes into a CSV, thinned to at most kMaxRows rows per algorithm:
//
//   rosenbrock_paths [--output paths.csv] [--updates N]
//                    [--algo NAME [--learning-rate R] [--momentum M] [--max-gradient-norm C]]
//
// --algo runs one algorithm, its settings overridden by the flags that follow (for sweeps).
// scripts/plot_rosenbrock.py draws the CSV. Prints one row per algorithm and exits nonzero
// when a path ends non-finite or farther from the minimum (1, 1) than it started.
#include <downhill/downhill.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace {

struct Run {
  std::string algo;
  downhill::Options options;
};

constexpr double kStartX = -3, kStartY = -3;
constexpr int64_t kMaxRows = 2000;  // rows per algorithm in the CSV, the start included

int usage() {
  std::fprintf(stderr,
               "usage: rosenbrock_paths [--output paths.csv] [--updates N] [--algo NAME "
               "[--learning-rate R] [--momentum M] [--max-gradient-norm C]]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string output = "paths.csv";
  int64_t updates = 3000;
  std::optional<std::string> only;
  std::optional<double> learning_rate, momentum, max_gradient_norm;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return usage();
    const char* value = argv[++i];
    if (arg == "--output") {
      output = value;
    } else if (arg == "--updates") {
      updates = std::atoll(value);
    } else if (arg == "--algo") {
      only = value;
    } else if (arg == "--learning-rate") {
      learning_rate = std::atof(value);
    } else if (arg == "--momentum") {
      momentum = std::atof(value);
    } else if (arg == "--max-gradient-norm") {
      max_gradient_norm = std::atof(value);
    } else {
      return usage();
    }
  }
  if (updates < 1) return usage();

  // Settings from a sweep (with --algo) over learning rates 1e-4..1 and momentum 0, 0.5 and
  // 0.9 at 3000 updates, picked so that each path travels visibly toward (1, 1), none leaves
  // the picture, and the paths differ. The start sits on the valley's steep wall, where the
  // gradient's norm is about 14600: the plain gradient methods clip it to norm 10 and
  // otherwise leap far out (SGD is left without momentum, to set it beside NAG's). The
  // adaptive methods normalize the gradient themselves; ADAGRAD crawls without momentum,
  // ADADELTA (which has no learning rate) too, and ESGD and ADAGRAD overshoot up the far
  // wall with momentum 0.9 at the larger rates; Adam with extra momentum swings out.
  const std::vector<Run> all = {
      {"sgd", downhill::Options().learning_rate(1e-3).max_gradient_norm(10)},
      {"nag", downhill::Options().learning_rate(1e-3).momentum(0.9).max_gradient_norm(10)},
      {"rprop", downhill::Options().learning_rate(1e-3)},
      {"rmsprop", downhill::Options().learning_rate(1e-2)},
      {"adagrad", downhill::Options().learning_rate(0.1).momentum(0.9)},
      {"adadelta", downhill::Options().momentum(0.9)},
      {"esgd", downhill::Options().learning_rate(0.3).momentum(0.5)},
      {"adam", downhill::Options().learning_rate(0.1)},
      {"adamw", downhill::Options().learning_rate(0.1)},
      {"lion", downhill::Options().learning_rate(1e-2)},
  };
  for (const auto& name : downhill::builtin_algorithm_names()) {  // a new one needs settings
    bool listed = false;
    for (const auto& run : all) listed = listed || run.algo == name;
    if (!listed) {
      std::fprintf(stderr, "rosenbrock_paths: no settings for the algorithm %s\n", name.c_str());
      return 1;
    }
  }
  std::vector<Run> runs;
  for (const auto& run : all) {
    if (only && run.algo != *only) continue;
    runs.push_back(run);
    auto& options = runs.back().options;
    if (learning_rate) options.learning_rate(*learning_rate);
    if (momentum) options.momentum(*momentum);
    if (max_gradient_norm) options.max_gradient_norm(*max_gradient_norm);
  }
  if (runs.empty()) {
    std::fprintf(stderr, "rosenbrock_paths: unknown algorithm %s\n", only->c_str());
    return 2;
  }

  std::ofstream csv(output);
  if (!csv) {
    std::fprintf(stderr, "rosenbrock_paths: cannot write %s\n", output.c_str());
    return 1;
  }
  csv << "algo,update,x,y\n";
  csv.precision(9);
  const int64_t every = (updates + kMaxRows - 2) / (kMaxRows - 1);  // thinning stride

  const double start_distance = std::hypot(kStartX - 1, kStartY - 1);
  bool ok = true;
  torch::manual_seed(0);  // ESGD draws its probe vectors from LibTorch's generator
  downhill::logger()->set_level(spdlog::level::warn);
  std::printf("%-10s %8s %12s %12s %14s %12s\n", "algorithm", "updates", "x", "y", "loss",
              "distance");
  for (const auto& [algo, options] : runs) {
    auto xy = torch::tensor({kStartX, kStartY}, torch::dtype(torch::kFloat64).requires_grad(true));
    auto rosenbrock = [&](const downhill::Batch&) -> downhill::Evaluation {
      auto x = xy[0], y = xy[1];
      return (1 - x).square() + 100 * (y - x.square()).square();
    };
    auto opt = downhill::build(algo, rosenbrock, {{"xy", xy}}, options);
    auto write_row = [&](int64_t update) {
      auto a = xy.accessor<double, 1>();
      csv << algo << ',' << update << ',' << a[0] << ',' << a[1] << '\n';
    };
    write_row(0);
    for (int64_t i = 1; i <= updates; ++i) {
      opt->step({});
      if (i % every == 0 || i == updates) write_row(i);
    }

    torch::NoGradGuard no_grad;
    const double loss = rosenbrock({}).loss.item<double>();
    auto a = xy.accessor<double, 1>();
    const double x = a[0], y = a[1];
    const double distance = std::hypot(x - 1, y - 1);
    std::printf("%-10s %8lld %12.6f %12.6f %14.6e %12.6f\n", opt->name().c_str(),
                static_cast<long long>(opt->update_count()), x, y, loss, distance);
    if (!std::isfinite(loss) || !(distance < start_distance)) {  // a NaN fails too
      std::fprintf(stderr, "rosenbrock_paths: %s ended at (%g, %g), not nearer (1, 1)\n",
                   opt->name().c_str(), x, y);
      ok = false;
    }
  }
  csv.close();
  if (!csv) {
    std::fprintf(stderr, "rosenbrock_paths: writing %s failed\n", output.c_str());
    return 1;
  }
  return ok ? 0 : 1;
}
