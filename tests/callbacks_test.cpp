// Callbacks (docs/guide.md, "Callbacks"): the order of the hooks over a run, a callback's
// stop (its reason in last_run() and the log, the best parameters restored, a checkpoint that
// resumes), built-in and user callbacks seeing the same values, and the guide's example.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "stop_at_threshold.h"  // examples/: the callbacks the guide shows
#include "test_support.h"

namespace {

using downhill::RunView;
using downhill::StopReason;
using downhill::testing::LogCapture;
using downhill::testing::TemporaryFolder;

// x starts at 0. Training reports the loss x (gradient 1), so SGD at rate 1 lowers x by
// exactly 1 per update; validation reports (x − target)².
struct LineProblem {
  explicit LineProblem(double target) : target(target) {}

  downhill::Loss loss() {
    return [this](const downhill::Batch&) -> downhill::Evaluation {
      if (!torch::GradMode::is_enabled()) {
        const auto distance = x.sum() - target;
        return {distance * distance, {}};
      }
      return {x.sum(), {}};
    };
  }
  std::unique_ptr<downhill::Optimizer> build(const downhill::Options& options) {
    return downhill::build("sgd", loss(), {{"x", x}}, options);
  }
  double value() const { return x.item<double>(); }

  torch::Tensor x = torch::zeros({1}, torch::dtype(torch::kFloat64).requires_grad(true));
  double target;
};

// A dataset of no tensors: `batches` empty batches per pass.
downhill::Dataset batches(int64_t count) {
  return downhill::Dataset(downhill::Batch{}, downhill::DatasetOptions().iteration_size(count));
}

// Writes each hook it sees, with the numbers of the view, into `events`.
class Recorder : public downhill::Callback {
 public:
  explicit Recorder(std::vector<std::string>& events, std::string name = "")
      : events_(events), name_(std::move(name)) {}

  void on_run_start(const RunView& run) override {
    add("run_start passes " + n(run.passes) + " updates " + n(run.updates));
  }
  void on_validation(const RunView& run) override {
    add("validation " + n(run.validations) + " passes " + n(run.passes) +
        (run.closing ? " closing" : ""));
  }
  void on_pass_start(const RunView& run) override { add("pass_start passes " + n(run.passes)); }
  void on_update(const RunView& run) override {
    add("update step " + n(run.pass_steps) + " updates " + n(run.updates));
  }
  void on_pass_end(const RunView& run) override { add("pass_end passes " + n(run.passes)); }
  void on_stop(const RunView& run) override {
    add("stop " + std::string(downhill::to_string(run.stop)));
  }
  void on_run_end(const RunView& run) override {
    add("run_end " + std::string(downhill::to_string(run.stop)));
  }

 private:
  static std::string n(int64_t value) { return std::to_string(value); }
  void add(const std::string& event) { events_.push_back(name_ + event); }
  std::vector<std::string>& events_;
  std::string name_;
};

TEST(Callbacks, HooksComeInTheLoopsOrderOverAShortRun) {
  // 3 batches per pass, validations before passes 1 and 3 (validate_every 2), 3 passes, and
  // the closing validation of the max_updates stop.
  LineProblem problem(-4.0);
  auto opt = problem.build(
      downhill::Options().learning_rate(1.0).validate_every(2).max_updates(3).patience(100));
  std::vector<std::string> events;
  opt->add_callback(std::make_shared<Recorder>(events));
  auto train = batches(3);
  const downhill::testing::ScopedLogLevel quiet(spdlog::level::off);
  opt->minimize(train);
  const std::vector<std::string> expected = {
      "run_start passes 0 updates 0",
      "validation 1 passes 0",
      "pass_start passes 0",
      "update step 1 updates 1",
      "update step 2 updates 2",
      "update step 3 updates 3",
      "pass_end passes 1",
      "pass_start passes 1",
      "update step 1 updates 4",
      "update step 2 updates 5",
      "update step 3 updates 6",
      "pass_end passes 2",
      "validation 2 passes 2",
      "pass_start passes 2",
      "update step 1 updates 7",
      "update step 2 updates 8",
      "update step 3 updates 9",
      "pass_end passes 3",
      "stop max_passes",
      "validation 3 passes 3 closing",
      "run_end max_passes",
  };
  EXPECT_EQ(events, expected);
}

TEST(Callbacks, UserCallbacksRunInTheOrderAddedAfterTheBuiltIns) {
  LineProblem problem(-4.0);
  auto opt = problem.build(downhill::Options().learning_rate(1.0).max_updates(1));
  std::vector<std::string> events;
  opt->add_callback(std::make_shared<Recorder>(events, "a: "));
  opt->add_callback(std::make_shared<Recorder>(events, "b: "));
  auto train = batches(1);
  LogCapture capture;
  opt->minimize(train);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0], "a: run_start passes 0 updates 0");
  EXPECT_EQ(events[1], "b: run_start passes 0 updates 0");
  for (size_t e = 0; e + 1 < events.size(); e += 2) {
    EXPECT_EQ(events[e].substr(3), events[e + 1].substr(3));
    EXPECT_EQ(events[e].substr(0, 3), "a: ");
    EXPECT_EQ(events[e + 1].substr(0, 3), "b: ");
  }
}

// Asks the run to stop once `updates` updates are applied.
class StopAtUpdate : public downhill::Callback {
 public:
  explicit StopAtUpdate(int64_t updates) : updates_(updates) {}
  void on_update(const RunView& run) override {
    if (run.updates == updates_) request_stop("update " + std::to_string(updates_));
  }

 private:
  int64_t updates_;
};

TEST(Callbacks, AStopInsideAPassRestoresTheBestAndItsCheckpointResumes) {
  TemporaryFolder folder("callbacks_stop");
  const auto options = downhill::Options()
                           .learning_rate(1.0)
                           .validate_every(1)
                           .max_updates(4)
                           .patience(100)
                           .checkpoint(folder.file("run.ckpt"))
                           .checkpoint_every(100);
  // x: 0 → validation 1 = 16 (best); pass 1 → x = −3; validation 2 = 1 (best); pass 2 stops
  // after its second update (update 5), at x = −5.
  LineProblem stopped(-4.0);
  {
    auto opt = stopped.build(options);
    opt->add_callback(std::make_shared<StopAtUpdate>(5));
    auto train = batches(3);
    LogCapture capture;
    opt->minimize(train);
    const auto run = opt->last_run();
    EXPECT_EQ(run.stop, StopReason::kCallback);
    EXPECT_EQ(run.stop_detail, "update 5");
    EXPECT_EQ(run.passes, 1);
    EXPECT_EQ(run.updates, 5);
    EXPECT_EQ(run.validations, 2);
    EXPECT_EQ(run.best_validation, 2);
    EXPECT_EQ(stopped.value(), -3.0);  // validation 2's parameters, restored
    EXPECT_NE(capture.text().find("info stopped (callback: update 5) after 1 passes and 5 "
                                  "updates\n"),
              std::string::npos)
        << capture.text();
    EXPECT_EQ(capture.text().find("SGD 2"), std::string::npos);  // pass 2 did not end
  }
  // The checkpoint holds the run as it stood: x = −5 in the middle of pass 2. Resumed
  // without the callback, it finishes pass 2 (1 update), then passes 3 and 4, validations
  // 3 and 4 before them and the closing 5th; the best stays validation 2 (x = −3).
  LineProblem resumed(-4.0);
  auto again = resumed.build(downhill::Options(options).resume(true));
  auto train = batches(3);
  const downhill::testing::ScopedLogLevel quiet(spdlog::level::off);
  again->minimize(train);
  LineProblem straight(-4.0);
  auto whole = straight.build(options);
  auto straight_train = batches(3);
  whole->minimize(straight_train);
  const auto a = again->last_run();
  const auto b = whole->last_run();
  EXPECT_EQ(a.stop, StopReason::kMaxUpdates);
  EXPECT_EQ(a.passes, 4);
  EXPECT_EQ(a.updates, 12);
  EXPECT_EQ(a.validations, 5);
  EXPECT_EQ(a.best_validation, 2);
  EXPECT_EQ(resumed.value(), -3.0);
  EXPECT_EQ(b.passes, a.passes);
  EXPECT_EQ(b.updates, a.updates);
  EXPECT_EQ(b.validations, a.validations);
  EXPECT_EQ(b.best_validation, a.best_validation);
  EXPECT_TRUE(torch::equal(resumed.x, straight.x));
}

TEST(Callbacks, AStopAtAPassEndYieldsThatPassAndEndsBeforeTheNext) {
  class StopAfterPass : public downhill::Callback {
   public:
    void on_pass_end(const RunView& run) override {
      if (run.passes == 2) request_stop("two passes");
    }
  };
  LineProblem problem(-10.0);  // every validation improves: x only comes closer
  auto opt = problem.build(downhill::Options().learning_rate(1.0).validate_every(1));
  opt->add_callback(std::make_shared<StopAfterPass>());
  auto train = batches(1);
  LogCapture capture;
  int items = 0;
  for (const auto& item : opt->iterate(train)) {
    (void)item;
    ++items;
  }
  EXPECT_EQ(items, 2);
  const auto run = opt->last_run();
  EXPECT_EQ(run.stop, StopReason::kCallback);
  EXPECT_EQ(run.passes, 2);
  EXPECT_EQ(run.validations, 2);  // no validation after the stop
  // The best is validation 2 (x = −1), restored though the last step left x = −2.
  EXPECT_EQ(run.best_validation, 2);
  EXPECT_EQ(problem.value(), -1.0);
}

TEST(Callbacks, TheFirstStopAskedWinsAndTheCallbacksAfterItSeeIt) {
  class AskAtValidation : public downhill::Callback {
   public:
    AskAtValidation(std::string reason, std::vector<StopReason>& seen)
        : reason_(std::move(reason)), seen_(seen) {}
    void on_validation(const RunView& run) override {
      seen_.push_back(run.stop);
      request_stop(reason_);
    }

   private:
    std::string reason_;
    std::vector<StopReason>& seen_;
  };
  LineProblem problem(-4.0);
  auto opt = problem.build(downhill::Options().learning_rate(1.0));
  std::vector<StopReason> seen;
  opt->add_callback(std::make_shared<AskAtValidation>("first", seen));
  opt->add_callback(std::make_shared<AskAtValidation>("second", seen));
  auto train = batches(1);
  LogCapture capture;
  opt->minimize(train);
  EXPECT_EQ(seen, (std::vector<StopReason>{StopReason::kNotStopped, StopReason::kCallback}));
  EXPECT_EQ(opt->last_run().stop_detail, "first");
  EXPECT_EQ(opt->last_run().passes, 0);
  EXPECT_EQ(problem.value(), 0.0);
}

TEST(Callbacks, AHookThatThrowsLeavesTheRun) {
  class Throws : public downhill::Callback {
   public:
    explicit Throws(std::vector<std::string>& ends) : ends_(ends) {}
    void on_pass_end(const RunView&) override { throw std::runtime_error("hook failed"); }
    void on_run_end(const RunView& run) override {
      ends_.push_back(std::string(downhill::to_string(run.stop)));
    }

   private:
    std::vector<std::string>& ends_;
  };
  LineProblem problem(-4.0);
  auto opt = problem.build(downhill::Options().learning_rate(1.0));
  std::vector<std::string> ends;
  opt->add_callback(std::make_shared<Throws>(ends));
  auto train = batches(1);
  LogCapture capture;
  EXPECT_EQ(downhill::testing::message_of<std::runtime_error>([&] { opt->minimize(train); }),
            "hook failed");
  EXPECT_EQ(opt->last_run().stop, StopReason::kLeft);
  EXPECT_EQ(ends, (std::vector<std::string>{"left"}));
}

TEST(Callbacks, AddingANullOrTheSameCallbackTwiceOrRemovingAnUnknownOneIsRefused) {
  LineProblem problem(-4.0);
  auto opt = problem.build(downhill::Options());
  EXPECT_NE(downhill::testing::message_of<std::invalid_argument>([&] {
              opt->add_callback(nullptr);
            }).find("not null"),
            std::string::npos);
  std::vector<std::string> events;
  auto recorder = std::make_shared<Recorder>(events);
  opt->add_callback(recorder);
  EXPECT_NE(downhill::testing::message_of<std::invalid_argument>([&] {
              opt->add_callback(recorder);
            }).find("added already"),
            std::string::npos);
  opt->remove_callback(recorder);
  EXPECT_NE(downhill::testing::message_of<std::invalid_argument>([&] {
              opt->remove_callback(recorder);
            }).find("was not added"),
            std::string::npos);
  // Removed, it sees no run.
  auto train = batches(1);
  const downhill::testing::ScopedLogLevel quiet(spdlog::level::off);
  opt->minimize(train, nullptr, [](downhill::Options& o) { o.max_updates(1); });
  EXPECT_TRUE(events.empty());
}

// What a user callback saw at each validation and pass end.
struct Seen {
  struct Validation {
    int64_t number;
    bool improved;
    downhill::Monitors monitors;
    int64_t best_validation;
    StopReason stop;
    double learning_rate;
  };
  std::vector<Validation> validations;
  std::vector<downhill::Monitors> passes;
};

class Watcher : public downhill::Callback {
 public:
  explicit Watcher(Seen& seen) : seen_(seen) {}
  void on_validation(const RunView& run) override {
    seen_.validations.push_back({run.validations, run.improved, run.monitors, run.best_validation,
                                 run.stop, run.optimizer.options().learning_rate()});
  }
  void on_pass_end(const RunView& run) override { seen_.passes.push_back(run.monitors); }

 private:
  Seen& seen_;
};

// The "train" loss of each pass record of a history file, in order.
std::vector<double> history_train_losses(const std::string& path) {
  std::ifstream in(path);
  std::vector<double> losses;
  for (std::string line; std::getline(in, line);) {
    const auto at = line.find("\"train\": {\"loss\": ");
    if (at == std::string::npos) continue;
    losses.push_back(std::stod(line.substr(at + 18)));
  }
  return losses;
}

TEST(Callbacks, BuiltInAndUserCallbacksSeeTheSameValues) {
  TemporaryFolder folder("callbacks_same");
  LineProblem problem(-4.0);
  auto opt = problem.build(downhill::Options()
                               .learning_rate(1.0)
                               .validate_every(1)
                               .patience(1)
                               .plateau_patience(1)
                               .plateau_factor(0.5)
                               .history(folder.file("history.jsonl")));
  Seen seen;
  opt->add_callback(std::make_shared<Watcher>(seen));
  auto train = batches(2);
  LogCapture capture;
  opt->minimize(train);
  const std::string log = capture.text();

  // By hand, 2 updates per pass: validations 16 *, 4 *, 0 *, then x = −6: 4 (the rate
  // halves to 0.5), pass 4 to x = −7: 9 (halves again; 2 since the best > patience 1).
  ASSERT_EQ(seen.validations.size(), 5u);
  ASSERT_EQ(seen.passes.size(), 4u);

  // The log lines (the built-in RunLog) show the values and improvements the user saw.
  size_t from = 0;
  for (const auto& v : seen.validations) {
    const std::string line = "info validation " + std::to_string(v.number) + " " +
                             v.monitors.to_string() + (v.improved ? " *" : "") + "\n";
    const auto at = log.find(line, from);
    EXPECT_NE(at, std::string::npos) << line;
    if (at != std::string::npos) from = at;
  }
  for (size_t p = 0; p < seen.passes.size(); ++p) {
    const std::string line =
        "info SGD " + std::to_string(p + 1) + " " + seen.passes[p].to_string() + "\n";
    EXPECT_NE(log.find(line), std::string::npos) << line;
  }
  // The history (the built-in HistoryRecorder) holds the pass monitors the user saw.
  const auto losses = history_train_losses(folder.file("history.jsonl"));
  ASSERT_EQ(losses.size(), seen.passes.size());
  for (size_t p = 0; p < losses.size(); ++p) EXPECT_EQ(losses[p], seen.passes[p].at("loss"));
  // Patience (1) stopped at the first validation the user saw more than 1 after the best,
  // and the user, called after it, saw that stop; before, no stop.
  const auto& last = seen.validations.back();
  EXPECT_EQ(opt->last_run().stop, StopReason::kPatience);
  EXPECT_GT(last.number - last.best_validation, 1);
  EXPECT_EQ(last.stop, StopReason::kPatience);
  for (size_t v = 0; v + 1 < seen.validations.size(); ++v) {
    EXPECT_LE(seen.validations[v].number - seen.validations[v].best_validation, 1);
    EXPECT_EQ(seen.validations[v].stop, StopReason::kNotStopped);
  }
  // Reduce on plateau (1) halved the rate at each validation without improvement, before
  // the user's callback was called for it.
  double rate = 1.0;
  for (const auto& v : seen.validations) {
    if (!v.improved) rate *= 0.5;
    EXPECT_EQ(v.learning_rate, rate) << "validation " << v.number;
  }
}

TEST(Callbacks, TheGuidesExampleStopsAtTheThresholdAndLogsEachValidation) {
  // As in docs/guide.md: x: 0 → validation 1 = (0 + 4)² = 16; pass 1 (3 updates) → x = −3,
  // validation 2 = 1 ≤ 2: the run stops there, before pass 2.
  LineProblem problem(-4.0);
  auto opt = problem.build(downhill::Options().learning_rate(1.0).validate_every(1));
  std::ostringstream out;
  opt->add_callback(std::make_shared<StopAtThreshold>("loss", 2.0));
  opt->add_callback(std::make_shared<ValidationLog>(out));
  auto train = batches(3);
  LogCapture capture;
  opt->minimize(train);
  EXPECT_EQ(out.str(),
            "validation 1 after 0 passes: loss 16 (best)\n"
            "validation 2 after 1 passes: loss 1 (best)\n"
            "stopped (callback) with the best of validation 2\n");
  const auto run = opt->last_run();
  EXPECT_EQ(run.stop, StopReason::kCallback);
  EXPECT_EQ(run.stop_detail, "loss reached 2");
  EXPECT_EQ(run.passes, 1);
  EXPECT_EQ(run.updates, 3);
  EXPECT_EQ(problem.value(), -3.0);
  EXPECT_NE(capture.text().find("info stopped (callback: loss reached 2) after 1 passes and 3 "
                                "updates\n"),
            std::string::npos)
      << capture.text();
}

}  // namespace
