// The update step, opt->apply(grads), for every algorithm with and without
// momentum: downhill's fused kernel, downhill's reference (tensor-op) rule, the
// torch::optim equivalent where one exists, and a plain copy of as many bytes as
// the fused kernel must move, all in one process so that their ratios are fair.
//
// Benchmark names: update/<algo>/<impl>/<momentum>/<n>, copy/<floats moved per
// element>x/<n>. Every benchmark reports bytes_per_second over the bytes the
// fused kernel must move, so fused / copy is the kernel's fraction of the copy's
// bandwidth. Times are the process's CPU time as well as wall time: on a shared
// machine running one LibTorch thread, CPU time is what the step costs, while wall
// time also counts the moments other processes held the core.
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <downhill/downhill.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <xmmintrin.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace {

constexpr std::array<int64_t, 3> kSizes = {1'000, 100'000, 16'000'000};
constexpr double kMomentum = 0.9;
constexpr double kLearningRate = 1e-3;

struct Algorithm {
  const char* name;
  int state_slots;  // parameter-sized tensors of algorithm state
  bool needs_hv;    // ESGD reads a Hessian-vector product
};

constexpr std::array<Algorithm, 8> kAlgorithms = {{
    {"sgd", 0, false},
    {"nag", 0, false},
    {"rprop", 2, false},
    {"rmsprop", 2, false},
    {"adagrad", 1, false},
    {"adadelta", 2, false},
    {"esgd", 1, true},
    {"adam", 2, false},
}};

/// Floats per parameter element the fused kernel must read and write: p and g
/// (and hv) in, p out, each state slot (and the velocity) in and out.
int floats_moved(const Algorithm& algorithm, bool momentum) {
  const int reads = 2 + algorithm.state_slots + (algorithm.needs_hv ? 1 : 0) + (momentum ? 1 : 0);
  const int writes = 1 + algorithm.state_slots + (momentum ? 1 : 0);
  return reads + writes;
}

int64_t bytes_moved(int floats_per_element, int64_t n) {
  return static_cast<int64_t>(floats_per_element) * n * static_cast<int64_t>(sizeof(float));
}

void set_counters(benchmark::State& state, int64_t bytes) {
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["threads"] = at::get_num_threads();
}

// Small gradients keep thousands of updates finite for every algorithm.
torch::Tensor gradient_like(int64_t n, uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::normal(0.0, 1e-2, {n}, generator, torch::kFloat);
}

void bench_downhill(benchmark::State& state, const Algorithm& algorithm, bool fused, bool momentum,
                    int64_t n) {
  torch::NoGradGuard no_grad;
  auto param = gradient_like(n, 1) * 100;
  const std::vector<torch::Tensor> grads = {gradient_like(n, 2)};
  const std::vector<torch::Tensor> hvs = {gradient_like(n, 3)};
  auto opt = downhill::build(algorithm.name, {{"p", param}},
                             downhill::Options()
                                 .learning_rate(kLearningRate)
                                 .momentum(momentum ? kMomentum : 0.0)
                                 .fused(fused));
  opt->apply(grads, hvs);  // allocates the state outside the timed loop
  for (auto _ : state) {
    opt->apply(grads, hvs);
    benchmark::ClobberMemory();
  }
  set_counters(state, bytes_moved(floats_moved(algorithm, momentum), n));
}

/// apply() on a gradient whose last element is NaN: the sum-of-squares pass that
/// checks for non-finite values (and gives the norm), then the update is skipped.
/// What every apply() spends before its kernel starts.
void bench_finite_check(benchmark::State& state, int64_t n) {
  torch::NoGradGuard no_grad;
  auto param = torch::zeros({n});
  auto grad = gradient_like(n, 2);
  grad[n - 1] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<torch::Tensor> grads = {grad};
  auto opt = downhill::build("sgd", {{"p", param}}, downhill::Options().learning_rate(1e-3));
  for (auto _ : state) {
    benchmark::DoNotOptimize(opt->apply(grads));
  }
  set_counters(state, bytes_moved(1, n));
}

template <typename MakeOptimizer>
void bench_torch_optim(benchmark::State& state, int floats_per_element, int64_t n,
                       MakeOptimizer make_optimizer) {
  auto param = (gradient_like(n, 1) * 100).requires_grad_();
  param.mutable_grad() = gradient_like(n, 2);
  auto opt = make_optimizer(std::vector<torch::Tensor>{param});
  opt.step();  // allocates the state outside the timed loop
  for (auto _ : state) {
    opt.step();
    benchmark::ClobberMemory();
  }
  set_counters(state, bytes_moved(floats_per_element, n));
}

// Copies [begin, end) with non-temporal stores, which skip reading the target
// lines into the cache first: the fastest copy of data larger than the cache.
void stream_copy(float* to, const float* from, int64_t begin, int64_t end) {
  int64_t i = begin;
  for (; i < end && reinterpret_cast<uintptr_t>(to + i) % 16 != 0; ++i) to[i] = from[i];
  for (; i + 4 <= end; i += 4) _mm_stream_ps(to + i, _mm_loadu_ps(from + i));
  for (; i < end; ++i) to[i] = from[i];
  _mm_sfence();
}

/// Copies floats_per_element·n/2 floats (so floats_per_element·n are read and
/// written in all), split across threads like the fused kernels, with memcpy
/// (regular stores: fastest while the data fits in the cache) or with streaming
/// stores (fastest beyond it). The report takes the faster of the two.
void bench_copy(benchmark::State& state, int floats_per_element, int64_t n, bool streaming) {
  const int64_t floats = floats_per_element * n / 2;
  auto source = torch::ones({floats});
  auto target = torch::zeros({floats});
  const float* from = source.data_ptr<float>();
  float* to = target.data_ptr<float>();
  for (auto _ : state) {
    at::parallel_for(0, floats, int64_t{1} << 16, [&](int64_t begin, int64_t end) {
      if (streaming) {
        stream_copy(to, from, begin, end);
      } else {
        std::memcpy(to + begin, from + begin, static_cast<size_t>(end - begin) * sizeof(float));
      }
    });
    benchmark::ClobberMemory();
  }
  set_counters(state, 2 * floats * static_cast<int64_t>(sizeof(float)));
}

std::string momentum_label(bool momentum) { return momentum ? "momentum" : "plain"; }

void register_all() {
  for (const int64_t n : kSizes) {
    const std::string size = std::to_string(n);
    std::set<int> copy_sizes;
    for (const auto& algorithm : kAlgorithms) {
      for (const bool momentum : {false, true}) {
        copy_sizes.insert(floats_moved(algorithm, momentum));
        for (const bool fused : {true, false}) {
          const std::string name = std::string("update/") + algorithm.name + "/" +
                                   (fused ? "fused" : "reference") + "/" +
                                   momentum_label(momentum) + "/" + size;
          benchmark::RegisterBenchmark(name.c_str(),
                                       [=, &algorithm](benchmark::State& state) {
                                         bench_downhill(state, algorithm, fused, momentum, n);
                                       })
              ->Unit(benchmark::kMicrosecond)
              ->MeasureProcessCPUTime();
        }
      }
    }
    // The torch::optim peers, each charged the bytes of the matching fused kernel.
    auto peer = [&](const char* algo, bool momentum, int floats, auto make_optimizer) {
      const std::string name =
          std::string("update/") + algo + "/torch_optim/" + momentum_label(momentum) + "/" + size;
      benchmark::RegisterBenchmark(
          name.c_str(),
          [=](benchmark::State& state) { bench_torch_optim(state, floats, n, make_optimizer); })
          ->Unit(benchmark::kMicrosecond)
          ->MeasureProcessCPUTime();
    };
    peer("sgd", true, 5, [](std::vector<torch::Tensor> p) {
      return torch::optim::SGD(p, torch::optim::SGDOptions(kLearningRate).momentum(kMomentum));
    });
    peer("adagrad", false, 5, [](std::vector<torch::Tensor> p) {
      return torch::optim::Adagrad(p, torch::optim::AdagradOptions(kLearningRate));
    });
    peer("rmsprop", false, 7, [](std::vector<torch::Tensor> p) {
      return torch::optim::RMSprop(p, torch::optim::RMSpropOptions(kLearningRate).centered(true));
    });
    peer("adam", false, 7, [](std::vector<torch::Tensor> p) {
      return torch::optim::Adam(p, torch::optim::AdamOptions(kLearningRate));
    });
    benchmark::RegisterBenchmark(("check/sgd/" + size).c_str(),
                                 [=](benchmark::State& state) { bench_finite_check(state, n); })
        ->Unit(benchmark::kMicrosecond)
        ->MeasureProcessCPUTime();
    for (const int floats : copy_sizes) {
      for (const bool streaming : {false, true}) {
        const std::string name = "copy/" + std::to_string(floats) + "x/" +
                                 (streaming ? "stream" : "memcpy") + "/" + size;
        benchmark::RegisterBenchmark(
            name.c_str(), [=](benchmark::State& state) { bench_copy(state, floats, n, streaming); })
            ->Unit(benchmark::kMicrosecond)
            ->MeasureProcessCPUTime();
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  downhill::logger()->set_level(spdlog::level::off);
  benchmark::AddCustomContext("torch_threads", std::to_string(at::get_num_threads()));
  benchmark::AddCustomContext("libtorch", TORCH_VERSION);
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
