#pragma once
// The problem of run_report_test's history tests and of its history_writer child: a linear
// regression with Adam, momentum and a learning-rate schedule, whose resumed runs continue
// the straight run bit for bit.

#include <ATen/CPUGeneratorImpl.h>
#include <downhill/downhill.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <thread>
#include <vector>

namespace history_test {

// Fixed data, drawn from a generator of their own.
struct Data {
  torch::Tensor x_train, y_train, x_valid, y_valid;
  Data() {
    auto generator = at::detail::createCPUGenerator(1234);
    auto truth = torch::randn({5, 3}, generator);
    x_train = torch::randn({36, 5}, generator);
    y_train = x_train.mm(truth) + 0.1 * torch::randn({36, 3}, generator);
    x_valid = torch::randn({20, 5}, generator);
    y_valid = x_valid.mm(truth) + 0.1 * torch::randn({20, 3}, generator);
  }
};

inline constexpr double kLearningRate = 0.05;
inline constexpr int64_t kStepsPerPass = 5;  // 36 samples in batches of 8, the last one short

// The schedule of these runs: f(t) = 0.97^t.
inline downhill::Schedule schedule() { return downhill::schedules::exponential(0.97); }

// A validation every 2 passes, no early stop, `max_updates` passes.
inline downhill::Options options(int64_t max_updates) {
  return downhill::Options()
      .learning_rate(kLearningRate)
      .momentum(0.5)
      .learning_rate_schedule(schedule())
      .validate_every(2)
      .patience(1000)
      .max_updates(max_updates);
}

// What a run yielded, pass by pass, and how it ended.
struct Trace {
  std::vector<downhill::Monitors> training, validation;
  std::vector<int64_t> passes;   // last_run().passes in the loop's body
  std::vector<int64_t> updates;  // update_count() after each pass
  downhill::RunSummary summary;
};

// One run on fresh parameters and datasets (the global generator seeded with 42). Each
// training step sleeps `step_sleep` first, so that a child running it can be killed in the
// middle. After each pass, `after_pass(pass)` runs in the loop's body; it returns false to
// leave the loop. The loss reports a monitor that is always NaN.
inline Trace run(const Data& data, const downhill::Options& options,
                 std::chrono::microseconds step_sleep = std::chrono::microseconds(0),
                 const std::function<bool(int64_t)>& after_pass = {}) {
  torch::manual_seed(42);
  auto w = torch::zeros({5, 3}, torch::requires_grad());
  auto b = torch::zeros({3}, torch::requires_grad());
  downhill::Dataset train({data.x_train, data.y_train},
                          downhill::DatasetOptions().batch_size(8).name("train"));
  // Two of the three slices per validation: positions and reshuffles carry across validations.
  downhill::Dataset valid({data.x_valid, data.y_valid},
                          downhill::DatasetOptions().batch_size(8).iteration_size(2).name("valid"));
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    if (step_sleep.count() > 0 && downhill::current_phase() == downhill::Phase::kTraining) {
      std::this_thread::sleep_for(step_sleep);
    }
    auto err = batch[0].mm(w) + b - batch[1];
    return {err.square().mean(),
            {{"abs_err", err.abs().mean()},
             {"nan", torch::full({}, std::numeric_limits<double>::quiet_NaN())}}};
  };
  auto opt = downhill::build("adam", loss, {{"w", w}, {"b", b}}, options);
  Trace trace;
  for (const auto& [training, validation] : opt->iterate(train, &valid)) {
    trace.training.push_back(training);
    trace.validation.push_back(validation);
    trace.passes.push_back(opt->last_run().passes);
    trace.updates.push_back(opt->update_count());
    if (after_pass && !after_pass(trace.passes.back())) break;
  }
  trace.summary = opt->last_run();
  return trace;
}

}  // namespace history_test
