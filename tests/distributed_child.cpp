// Helper of distributed_test: one rank of a data-parallel run (or the single process it is
// compared with), started by the test with torchrun's variables set.
//
//   distributed_child SCENARIO ALGO OUT_FILE [KEY=VALUE ...]
//
// Scenarios:
//   train    trains a small float64 regression for `passes` passes with the loop; after
//            each pass writes the parameters' values (and the pass's training loss) to
//            OUT_FILE as text with 17 significant digits. KEY=VALUE: batch (per rank),
//            passes, momentum, patience, checkpoint, resume, die_at (a pass after which rank
//            1 exits at once), timeout, shape=odd (rank 1's parameter shape differs),
//            valid_shift, nan_at (rank 1's loss is NaN at this training step, from 1),
//            distributed=0 (a plain single process), lr, hang_at (a pass after which rank 1
//            sleeps for 10 minutes, holding its connections open), own_group=1 (the
//            group is made here, a c10d ProcessGroupGloo handed in by Options::process_group),
//            stop_at=N with stop_rank=R (a callback on rank R alone asks the run to stop at
//            the end of pass N), schedule0=F / schedule1=F (rank 0's or rank 1's
//            learning_rate_schedule is the constant F), leave_at=N with then=step|evaluate
//            (rank 1 leaves the loop after pass N and calls step() on a training batch, or
//            evaluate() on the validation set), log=warn (downhill's warnings are logged too),
//            range=1 (the training data is a range, downhill::from_range, of this rank's share
//            of the batches: batch k·world + rank, as the loop shards a tensor dataset) with
//            range_short=1 (rank 1's range lacks its last batch), accumulate=K, frozen=1 (b in
//            a frozen group), late_bias=1 (rank 1's loss takes b through exp and log made
//            before the product, so that its backward pass gives w's gradient first and b's
//            after, the other way round from rank 0's), check_grads=1 (after the loop, writes
//            whether the loop left every .grad undefined, then whether a backward() of one's
//            own still accumulates into .grad: "grads untouched 1 own backward 1"), pass_sleep=S
//            (every rank sleeps S seconds after each pass, and prints "world W" first: a run long
//            enough for a node to join it, in tests/multi_machine_test.sh).
// It prints "pass N" to stdout after each pass, flushed (for the Ctrl-C test).
// On an exception it writes "error: WHAT" to OUT_FILE, and exits with 3.
#include <downhill/distributed.h>
#include <downhill/downhill.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <vector>

#include "test_support.h"

namespace {

// Asks the run to stop at the end of pass `pass`.
class StopAtPass : public downhill::Callback {
 public:
  explicit StopAtPass(int64_t pass) : pass_(pass) {}
  void on_pass_end(const downhill::RunView& run) override {
    if (run.passes == pass_) request_stop("pass " + std::to_string(pass_) + " on this rank");
  }

 private:
  int64_t pass_;
};

using Settings = std::map<std::string, std::string>;

double number(const Settings& settings, const std::string& key, double fallback) {
  const auto found = settings.find(key);
  return found == settings.end() ? fallback : std::stod(found->second);
}

std::string text(const Settings& settings, const std::string& key) {
  const auto found = settings.find(key);
  return found == settings.end() ? std::string() : found->second;
}

// 72 samples of 5 features; targets from a fixed linear map plus a smooth non-linearity,
// so that no parameter fits them exactly.
std::pair<torch::Tensor, torch::Tensor> data(double shift) {
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto x = torch::sin(torch::arange(0, 72 * 5, opts).reshape({72, 5}) * 0.37);
  auto y = torch::cos(x.matmul(torch::arange(1, 16, opts).reshape({5, 3}) * 0.1)) + shift;
  return {x, y};
}

// A group made as a user of c10d would: a TCPStore at torchrun's address, then Gloo.
std::shared_ptr<const downhill::ProcessGroup> own_group(const downhill::Place& place) {
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(std::stoi(std::getenv("MASTER_PORT")));
  store_options.isServer = place.rank == 0;
  store_options.numWorkers = static_cast<size_t>(place.world_size);
  store_options.timeout = std::chrono::seconds(20);
  auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", store_options);
  auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(20));
  options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  return downhill::ProcessGroup::of(c10::make_intrusive<c10d::ProcessGroupGloo>(
      store, static_cast<int>(place.rank), static_cast<int>(place.world_size), options));
}

int train(const std::string& algo, const std::string& out_file, const Settings& settings) {
  const auto place = downhill::torchrun_place();
  const bool distributed = text(settings, "distributed") != "0";
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const bool odd_shape = text(settings, "shape") == "odd" && place.rank == 1;
  // Every rank starts from different values: build() gives them rank 0's.
  auto w = (torch::arange(0, 15, opts)
                    .reshape(odd_shape ? std::vector<int64_t>{3, 5} : std::vector<int64_t>{5, 3}) *
                0.05 +
            0.1 * static_cast<double>(distributed ? place.rank : 0))
               .requires_grad_();
  auto b = torch::zeros({3}, opts).requires_grad_();
  auto [x, y] = data(0.0);
  auto [vx, vy] = data(number(settings, "valid_shift", 0.0));
  const auto nan_at = static_cast<int64_t>(number(settings, "nan_at", -1));
  int64_t training_steps = 0;
  const bool late_bias = text(settings, "late_bias") == "1" && place.rank == 1;
  downhill::Loss loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    const auto bias = late_bias ? b.exp().log() : b;
    auto error = batch[0].matmul(w) + bias - batch[1];
    auto value = error.pow(2).mean();
    if (downhill::current_phase() == downhill::Phase::kTraining && ++training_steps == nan_at &&
        place.rank == 1) {
      value = value * std::numeric_limits<double>::quiet_NaN();
    }
    return {value, {{"abs", error.abs().mean()}}};
  };
  auto options = downhill::Options()
                     .learning_rate(number(settings, "lr", 0.05))
                     .momentum(number(settings, "momentum", 0.0))
                     .patience(static_cast<int64_t>(number(settings, "patience", 100)))
                     .validate_every(1)
                     .max_updates(static_cast<int64_t>(number(settings, "passes", 3)))
                     .distributed(distributed)
                     .distributed_timeout(number(settings, "timeout", 20));
  if (algo == "rmsprop" || algo == "adam") options.momentum(number(settings, "momentum", 0.5));
  if (!text(settings, "max_steps").empty())
    options.max_steps(std::stoll(text(settings, "max_steps")));
  if (!text(settings, "checkpoint").empty()) options.checkpoint(text(settings, "checkpoint"));
  if (text(settings, "resume") == "1") options.resume(true);
  const std::string schedule = text(settings, "schedule" + std::to_string(place.rank));
  if (!schedule.empty()) {
    options.learning_rate_schedule(downhill::schedules::constant(std::stod(schedule)));
  }
  if (text(settings, "own_group") == "1")
    options.distributed(false).process_group(own_group(place));
  if (!text(settings, "accumulate").empty())
    options.accumulate(std::stoll(text(settings, "accumulate")));
  downhill::Params params{{"w", w}, {"b", b}};
  if (text(settings, "frozen") == "1") params = downhill::Params({{"w", w}}).frozen({{"b", b}});
  auto opt = downhill::build(algo, loss, params, options);
  const auto stop_at = static_cast<int64_t>(number(settings, "stop_at", -1));
  if (stop_at > 0 && place.rank == static_cast<int64_t>(number(settings, "stop_rank", 0))) {
    opt->add_callback(std::make_shared<StopAtPass>(stop_at));
  }
  const auto batch = static_cast<int64_t>(number(settings, "batch", 4));
  downhill::Dataset tensors({x, y}, downhill::DatasetOptions().batch_size(batch).shuffle(false));
  downhill::Dataset valid({vx, vy}, downhill::DatasetOptions().batch_size(batch).shuffle(false));
  std::vector<downhill::Batch> share;  // range=1: this rank's batches, which it walks each pass
  const int64_t world = distributed ? place.world_size : 1;
  for (int64_t k = distributed ? place.rank : 0; k * batch < x.size(0); k += world) {
    const int64_t length = std::min(batch, x.size(0) - k * batch);
    share.push_back({x.narrow(0, k * batch, length), y.narrow(0, k * batch, length)});
  }
  if (text(settings, "range_short") == "1" && place.rank == 1) share.pop_back();
  downhill::Dataset range = downhill::from_range(share);
  downhill::Dataset& train = text(settings, "range") == "1" ? range : tensors;
  std::ofstream out(out_file);
  out.precision(17);
  const int die_at = static_cast<int>(number(settings, "die_at", -1));
  const int hang_at = static_cast<int>(number(settings, "hang_at", -1));
  const int leave_at = static_cast<int>(number(settings, "leave_at", -1));
  const double pass_sleep = number(settings, "pass_sleep", 0);
  if (pass_sleep > 0) {
    std::printf("world %lld\n", static_cast<long long>(opt->place().world_size));
    std::fflush(stdout);
  }
  int pass = 0;
  for (const auto& [training, validation] : opt->iterate(train, &valid)) {
    ++pass;
    out << "pass " << pass << " loss " << training.at("loss") << " valid " << validation.at("loss")
        << "\n";
    for (const auto& tensor : {w, b}) {
      const auto flat = tensor.detach().reshape({-1});
      for (int64_t i = 0; i < flat.numel(); ++i) out << flat[i].item<double>() << " ";
      out << "\n";
    }
    out.flush();
    std::printf("pass %d\n", pass);
    std::fflush(stdout);
    if (pass_sleep > 0) std::this_thread::sleep_for(std::chrono::duration<double>(pass_sleep));
    if (pass == die_at && place.rank == 1) std::_Exit(9);
    if (pass == hang_at && place.rank == 1) std::this_thread::sleep_for(std::chrono::minutes(10));
    if (pass == leave_at && place.rank == 1) break;
  }
  if (leave_at > 0 && place.rank == 1) {
    if (text(settings, "then") == "evaluate") {
      opt->evaluate(valid);
    } else {
      opt->step(downhill::Batch{x.narrow(0, 0, batch), y.narrow(0, 0, batch)});
    }
  }
  if (text(settings, "check_grads") == "1") {
    const bool untouched = !w.grad().defined() && !b.grad().defined();
    loss({x, y}).loss.backward();
    const bool own = w.grad().defined() && b.grad().defined();
    out << "grads untouched " << untouched << " own backward " << own << "\n";
  }
  const auto summary = opt->last_run();
  out << "stop " << downhill::to_string(summary.stop) << " passes " << summary.passes
      << " best_pass " << summary.best_pass << " updates " << summary.updates << "\n";
  if (!summary.stop_detail.empty()) out << "detail " << summary.stop_detail << "\n";
  for (const auto& tensor : {w, b}) {
    const auto flat = tensor.detach().reshape({-1});
    for (int64_t i = 0; i < flat.numel(); ++i) out << flat[i].item<double>() << " ";
    out << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s SCENARIO ALGO OUT_FILE [KEY=VALUE ...]\n", argv[0]);
    return 2;
  }
  const std::string scenario = argv[1], algo = argv[2], out_file = argv[3];
  Settings settings;
  for (int a = 4; a < argc; ++a) {
    const std::string arg = argv[a];
    const auto eq = arg.find('=');
    settings[arg.substr(0, eq)] = eq == std::string::npos ? "" : arg.substr(eq + 1);
  }
  // Errors only, or warnings too with log=warn.
  const downhill::testing::ScopedLogLevel quiet(settings.count("log") && settings["log"] == "warn"
                                                    ? spdlog::level::warn
                                                    : spdlog::level::err);
  torch::manual_seed(7);
  try {
    if (scenario == "train") return train(algo, out_file, settings);
    std::fprintf(stderr, "unknown scenario %s\n", scenario.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::ofstream(out_file) << "error: " << e.what() << "\n";
    return 3;
  }
}
