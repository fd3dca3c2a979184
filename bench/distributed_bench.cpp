// The data-parallel step: downhill on one process against two ranks (c10d Gloo over
// 127.0.0.1), the time per step split into loss/gradient, all-reduce and update.
// `bash bench/distributed_run.sh BUILD_DIR` runs it beside bench/distributed_peer.py
// (PyTorch, one process and DistributedDataParallel) and prints the table; alone:
//
//   distributed_bench [--sizes=N,N...] [--steps=S,S...] [--warmup=W,W...] [--batch=B]
//
// One process when RANK/WORLD_SIZE are not set; with them (and MASTER_ADDR, MASTER_PORT,
// as torchrun sets them) one rank of the group. Prints one JSON line per size.
//
// The model, the same in the peer: an MLP d → 5d → d (ReLU), float32, mean squared error
// to fixed random targets, d = round(√(n/10)), so 10d² + 6d parameters: 100,600 at
// n = 1e5 (d = 100), 10,006,000 at n = 1e7 (d = 1000). A fixed batch of B (default 32)
// random samples per rank. SGD with momentum 0.9, learning rate 1e-3 (torch.optim.SGD in
// the peer). One LibTorch thread per process.
//
// A step: loss and gradient (forward, torch::autograd::grad), then opt->apply(grads). Two
// ranks alternate three kinds of step, every rank the same sequence, so that the
// collectives pair up:
//   sync    loss/gradient, then apply() of the data-parallel optimizer: the gradients are
//           averaged in downhill's buckets (25 MiB), then the update runs;
//   local   loss/gradient, then apply() of a twin optimizer built without a group (its own
//           copy of the parameters): the same update without the all-reduce;
//   raw     one Gloo allreduce of n float32 in a single tensor on the same group: what the
//           transport alone costs for the same bytes;
//   step    opt->step() of a data-parallel optimizer built with the loss: the forward pass,
//           then the backward pass with the gradients averaged bucket by bucket while it
//           runs (hooks on the gradient accumulators), then the update. Only its total is
//           timed: its all-reduce overlaps the backward pass.
// Each phase is timed with the wall clock (std::chrono::steady_clock; the all-reduce is
// waiting as well as work, which CPU time would miss), and the medians over the timed
// steps of each kind are printed. One process runs the sync kind only, with a plain
// optimizer. bench/distributed_report.py derives the split (the method is in
// docs/performance.md, "Data-parallel step (2 ranks)").
#include <ATen/Parallel.h>
#include <downhill/distributed.h>
#include <downhill/downhill.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <vector>

#include "arguments.h"

namespace {

constexpr double kLearningRate = 1e-3;
constexpr double kMomentum = 0.9;

struct Settings {
  std::vector<int64_t> sizes = {100'000, 10'000'000};
  std::vector<int64_t> steps = {300, 15};  // timed, all kinds together
  std::vector<int64_t> warmup = {30, 3};
  int64_t batch = 32;
};

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> values) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

/// The group: TCPStore at MASTER_ADDR:MASTER_PORT served by rank 0, Gloo on 127.0.0.1 with
/// two threads, as downhill's own torchrun join makes it (src/communicator.cpp); made here
/// so that the raw allreduce runs on the very group downhill uses.
c10::intrusive_ptr<c10d::ProcessGroup> make_group(int rank, int world) {
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(std::stoi(environment("MASTER_PORT")));
  // Under torchrun its agent serves the store already.
  store_options.isServer = rank == 0 && environment("TORCHELASTIC_USE_AGENT_STORE") != "True";
  store_options.numWorkers = static_cast<size_t>(world);
  store_options.timeout = std::chrono::seconds(60);
  auto store = c10::make_intrusive<c10d::TCPStore>(environment("MASTER_ADDR"), store_options);
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("bench", store);
  auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(60));
  options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  options->threads = 2;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, world, options);
}

struct Model {
  int64_t d;
  std::vector<torch::Tensor> params;  // w1 [5d, d], b1 [5d], w2 [d, 5d], b2 [d]
  torch::Tensor x, y;

  Model(int64_t n, int64_t batch, int rank) : d(std::llround(std::sqrt(n / 10.0))) {
    torch::manual_seed(0);  // the same start on every rank (downhill broadcasts rank 0's too)
    const double s1 = 1.0 / std::sqrt(static_cast<double>(d));
    const double s2 = 1.0 / std::sqrt(5.0 * static_cast<double>(d));
    params = {torch::randn({5 * d, d}) * s1, torch::zeros({5 * d}), torch::randn({d, 5 * d}) * s2,
              torch::zeros({d})};
    for (auto& p : params) p.requires_grad_();
    torch::manual_seed(1000 + rank);  // each rank its own batch
    x = torch::randn({batch, d});
    y = torch::randn({batch, d});
  }

  int64_t numel() const {
    int64_t total = 0;
    for (const auto& p : params) total += p.numel();
    return total;
  }

  torch::Tensor loss() const {
    auto h = torch::relu(torch::linear(x, params[0], params[1]));
    return torch::mse_loss(torch::linear(h, params[2], params[3]), y);
  }

  std::vector<torch::Tensor> gradients() const { return torch::autograd::grad({loss()}, params); }
};

downhill::Params named(const std::vector<torch::Tensor>& tensors) {
  return {{"w1", tensors[0]}, {"b1", tensors[1]}, {"w2", tensors[2]}, {"b2", tensors[3]}};
}

std::string number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6e", value);
  return buffer;
}

std::string run_size(int64_t n, int64_t steps, int64_t warmup, const Settings& settings, int rank,
                     int world, const c10::intrusive_ptr<c10d::ProcessGroup>& group) {
  Model model(n, settings.batch, rank);
  const auto options = downhill::Options().learning_rate(kLearningRate).momentum(kMomentum);
  auto opt = downhill::build(
      "sgd", named(model.params),
      group ? downhill::Options(options).process_group(downhill::ProcessGroup::of(group))
            : options);
  std::vector<torch::Tensor> twin_params;
  for (const auto& p : model.params) twin_params.push_back(p.detach().clone());
  auto twin = downhill::build("sgd", named(twin_params), options);
  std::vector<torch::Tensor> flat{torch::randn({model.numel()})};
  // The same parameters, stepped by an optimizer that has the loss (kind step).
  std::unique_ptr<downhill::Optimizer> stepper;
  if (group) {
    stepper = downhill::build(
        "sgd", [&model](const downhill::Batch&) -> downhill::Evaluation { return model.loss(); },
        named(model.params),
        downhill::Options(options).process_group(downhill::ProcessGroup::of(group)));
  }

  enum Kind { kSync, kLocal, kRaw, kStep };
  const int kinds = world > 1 ? 4 : 1;
  std::vector<double> grad_time[4], update_time[4], total_time[4];
  for (int64_t step = 0; step < warmup + steps; ++step) {
    const Kind kind = static_cast<Kind>(step % kinds);
    double grad_seconds = 0, update_seconds = 0;
    if (kind == kStep) {
      const double begin = wall_seconds();
      stepper->step({});
      update_seconds = wall_seconds() - begin;  // the whole step: its total is what counts
      if (!stepper->last_run().stop_detail.empty() || !stepper->update_count()) {
        throw std::runtime_error("downhill skipped an update");
      }
    } else if (kind == kRaw) {
      const double begin = wall_seconds();
      group->allreduce(flat)->wait();
      update_seconds = wall_seconds() - begin;
    } else {
      const double begin = wall_seconds();
      const auto grads = model.gradients();
      const double middle = wall_seconds();
      const bool applied = (kind == kSync ? opt : twin)->apply(grads);
      const double end = wall_seconds();
      if (!applied) throw std::runtime_error("downhill skipped an update");
      grad_seconds = middle - begin;
      update_seconds = end - middle;
    }
    if (step < warmup) continue;
    grad_time[kind].push_back(grad_seconds);
    update_time[kind].push_back(update_seconds);
    total_time[kind].push_back(grad_seconds + update_seconds);
  }
  std::ostringstream out;
  out << "{\"side\": \"" << (world > 1 ? "downhill_2rank" : "downhill_1proc")
      << "\", \"rank\": " << rank << ", \"world\": " << world << ", \"n\": " << n
      << ", \"params\": " << model.numel() << ", \"d\": " << model.d
      << ", \"batch\": " << settings.batch << ", \"threads\": " << at::get_num_threads();
  const char* names[4] = {"sync", "local", "raw", "step"};
  for (int k = 0; k < kinds; ++k) {
    out << ", \"" << names[k] << "\": {\"steps\": " << grad_time[k].size()
        << ", \"grad\": " << number(median(grad_time[k]))
        << ", \"update\": " << number(median(update_time[k]))
        << ", \"total\": " << number(median(total_time[k])) << "}";
  }
  out << "}";
  return out.str();
}

Settings parse(int argc, char** argv) {
  Settings settings;
  for (int i = 1; i < argc; ++i) {
    const std::string argument = argv[i];
    const auto equals = argument.find('=');
    const std::string key = argument.substr(0, equals);
    const std::string value = equals == std::string::npos ? "" : argument.substr(equals + 1);
    if (key == "--sizes") {
      settings.sizes = bench::parse_list(value);
    } else if (key == "--steps") {
      settings.steps = bench::parse_list(value);
    } else if (key == "--warmup") {
      settings.warmup = bench::parse_list(value);
    } else if (key == "--batch") {
      settings.batch = std::stoll(value);
    } else {
      throw std::invalid_argument("unknown argument " + argument +
                                  "; usage: distributed_bench [--sizes=N,N] [--steps=S,S] "
                                  "[--warmup=W,W] [--batch=B]");
    }
  }
  if (settings.sizes.empty() || settings.steps.size() != settings.sizes.size() ||
      settings.warmup.size() != settings.sizes.size() || settings.batch < 1) {
    throw std::invalid_argument("distributed_bench: one step count and warmup per size");
  }
  return settings;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Settings settings = parse(argc, argv);
    downhill::logger()->set_level(spdlog::level::off);
    at::set_num_threads(1);
    const auto place = downhill::torchrun_place();
    const int rank = static_cast<int>(place.rank), world = static_cast<int>(place.world_size);
    c10::intrusive_ptr<c10d::ProcessGroup> group;
    if (world > 1) group = make_group(rank, world);
    for (size_t s = 0; s < settings.sizes.size(); ++s) {
      std::cout << run_size(settings.sizes[s], settings.steps[s], settings.warmup[s], settings,
                            rank, world, group)
                << std::endl;
    }
    if (group) group->barrier()->wait();  // neither rank leaves while the other still sends
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "distributed_bench: " << e.what() << "\n";
    return 1;
  }
}
