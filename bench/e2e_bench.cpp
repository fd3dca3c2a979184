// End to end: whole training runs through downhill::minimize against the loop a
// LibTorch user would write by hand with torch::optim, doing the same work (the
// same loss, the same number of updates, the loss read back every step as
// downhill's monitors do, one evaluation pass before training as downhill's
// first validation does).
//
//  e2e/rosenbrock/...     2-D Rosenbrock, 10 000 SGD updates (momentum 0.9).
//  e2e/factorization/...  matrix factorization at the size of downhill's MNIST
//                         example: batches of 400×784, u 400×400, v 400×784,
//                         10 batches a pass, RMSProp (centred).
//
// Each repetition is one whole run; the counter `final_loss` shows that both
// sides did comparable work.
#include <benchmark/benchmark.h>
#include <downhill/downhill.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace {

constexpr int64_t kRosenbrockUpdates = 10'000;
constexpr double kRosenbrockLearningRate = 1e-3;
constexpr double kRosenbrockMomentum = 0.9;

constexpr int64_t kRows = 400, kColumns = 784, kRank = 400, kBatches = 10;
constexpr int64_t kFactorizationPasses = 3;
constexpr double kFactorizationLearningRate = 1e-3;
constexpr double kRmsHalflife = 14;  // downhill's default; torch's alpha is γ(14)
constexpr double kRmsRegularizer = 1e-8;
constexpr int kRepetitions = 5;

torch::Tensor rosenbrock(const torch::Tensor& xy) {
  const auto x = xy[0], y = xy[1];
  const auto a = 1 - x, b = y - x * x;
  return a * a + 100 * b * b;
}

torch::Tensor rosenbrock_start() { return torch::tensor({-1.2f, 1.0f}).requires_grad_(); }

void rosenbrock_downhill(benchmark::State& state) {
  double final_loss = 0;
  for (auto _ : state) {
    auto xy = rosenbrock_start();
    auto loss = [&](const downhill::Batch&) -> downhill::Evaluation { return rosenbrock(xy); };
    const auto [train, valid] =
        downhill::minimize(loss, {{"xy", xy}}, downhill::Batch{},
                           downhill::Options()
                               .algo("sgd")
                               .learning_rate(kRosenbrockLearningRate)
                               .momentum(kRosenbrockMomentum)
                               .max_updates(kRosenbrockUpdates)
                               .validate_every(kRosenbrockUpdates)
                               .patience(std::numeric_limits<int32_t>::max()));
    final_loss = train.at("loss");
  }
  state.counters["final_loss"] = final_loss;
}

void rosenbrock_torch_optim(benchmark::State& state) {
  double final_loss = 0;
  for (auto _ : state) {
    auto xy = rosenbrock_start();
    torch::optim::SGD opt(
        {xy}, torch::optim::SGDOptions(kRosenbrockLearningRate).momentum(kRosenbrockMomentum));
    {
      torch::NoGradGuard no_grad;
      final_loss = rosenbrock(xy).item<double>();  // downhill's first validation
    }
    for (int64_t i = 0; i < kRosenbrockUpdates; ++i) {
      opt.zero_grad();
      auto loss = rosenbrock(xy);
      loss.backward();
      final_loss = loss.item<double>();
      opt.step();
    }
  }
  state.counters["final_loss"] = final_loss;
}

struct Factorization {
  torch::Tensor data = torch::rand({kRows * kBatches, kColumns});
  torch::Tensor u0 = torch::randn({kRows, kRank}) * 0.05;
  torch::Tensor v0 = torch::randn({kRank, kColumns}) * 0.05;

  static torch::Tensor loss(const torch::Tensor& batch, const torch::Tensor& u,
                            const torch::Tensor& v) {
    return (batch - u.mm(v)).square().mean() + 1e-3 * u.abs().mean();
  }
};

const Factorization& factorization() {
  static const Factorization problem = [] {
    torch::manual_seed(0);
    return Factorization{};
  }();
  return problem;
}

void factorization_downhill(benchmark::State& state) {
  const auto& problem = factorization();
  double final_loss = 0;
  for (auto _ : state) {
    auto u = problem.u0.clone().requires_grad_();
    auto v = problem.v0.clone().requires_grad_();
    auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
      return Factorization::loss(batch[0], u, v);
    };
    const auto [train, valid] =
        downhill::minimize(loss, {{"u", u}, {"v", v}}, problem.data,
                           downhill::Options()
                               .algo("rmsprop")
                               .learning_rate(kFactorizationLearningRate)
                               .rms_halflife(kRmsHalflife)
                               .rms_regularizer(kRmsRegularizer)
                               .batch_size(kRows)
                               .max_updates(kFactorizationPasses)
                               .validate_every(kFactorizationPasses)
                               .patience(std::numeric_limits<int32_t>::max()));
    final_loss = train.at("loss");
  }
  state.counters["final_loss"] = final_loss;
}

void factorization_torch_optim(benchmark::State& state) {
  const auto& problem = factorization();
  double final_loss = 0;
  for (auto _ : state) {
    auto u = problem.u0.clone().requires_grad_();
    auto v = problem.v0.clone().requires_grad_();
    torch::optim::RMSprop opt({u, v}, torch::optim::RMSpropOptions(kFactorizationLearningRate)
                                          .alpha(std::exp(-std::log(2.0) / kRmsHalflife))
                                          .eps(kRmsRegularizer)
                                          .centered(true));
    auto batch = [&](int64_t index) { return problem.data.narrow(0, index * kRows, kRows); };
    {
      torch::NoGradGuard no_grad;  // downhill's first validation: one pass, no update
      double sum = 0;
      for (int64_t b = 0; b < kBatches; ++b) {
        sum += Factorization::loss(batch(b), u, v).item<double>();
      }
      final_loss = sum / kBatches;
    }
    for (int64_t pass = 0; pass < kFactorizationPasses; ++pass) {
      const auto order = torch::randperm(kBatches, torch::kLong);
      const auto* slices = order.data_ptr<int64_t>();
      double sum = 0;
      for (int64_t b = 0; b < kBatches; ++b) {
        opt.zero_grad();
        auto loss = Factorization::loss(batch(slices[b]), u, v);
        loss.backward();
        sum += loss.item<double>();
        opt.step();
      }
      final_loss = sum / kBatches;
    }
  }
  state.counters["final_loss"] = final_loss;
}

void register_run(const char* name, void (*run)(benchmark::State&)) {
  benchmark::RegisterBenchmark(name, run)
      ->Iterations(1)
      ->Repetitions(kRepetitions)
      ->Unit(benchmark::kMillisecond)
      ->MeasureProcessCPUTime();
}

}  // namespace

int main(int argc, char** argv) {
  downhill::logger()->set_level(spdlog::level::off);
  benchmark::AddCustomContext("torch_threads", std::to_string(at::get_num_threads()));
  benchmark::AddCustomContext("libtorch", TORCH_VERSION);
  register_run("e2e/rosenbrock/downhill", rosenbrock_downhill);
  register_run("e2e/rosenbrock/torch_optim", rosenbrock_torch_optim);
  register_run("e2e/factorization/downhill", factorization_downhill);
  register_run("e2e/factorization/torch_optim", factorization_torch_optim);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
