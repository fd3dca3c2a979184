// The loop's two limits. max_passes stops after that many passes, and max_updates, the seed's
// name for it, is the same setting. max_steps stops right after the update that brings
// update_count() to its value, inside a pass when it is not a multiple of the batches per
// pass; the run then closes as a max_passes stop does (a closing validation, the best
// parameters back), says kMaxSteps and names max_steps in its closing line. With accumulate(2)
// K updates take 2K batches; skipped updates do not count; a checkpoint written at the stop
// resumes exactly; invalid limits are refused by name. Counts are worked out here from the
// batches per pass; expected parameters come from a run made another way (step() by hand, or
// the straight run), never from the loop's own output.
#include <ATen/CPUGeneratorImpl.h>
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "same_bits.h"
#include "test_support.h"

namespace {

using downhill::StopReason;
using downhill::testing::LogCapture;
using downhill::testing::message_of;
using downhill::testing::same_bits;
using downhill::testing::same_tensors;
using downhill::testing::TemporaryFolder;
using ::testing::AllOf;
using ::testing::HasSubstr;

// 28 training samples in batches of 4: 7 batches a pass.
constexpr int64_t kBatchesPerPass = 7;

// The data: y = x·truth + noise, from a generator of its own.
struct Data {
  torch::Tensor x_train, y_train, x_valid, y_valid;
  Data() {
    auto generator = at::detail::createCPUGenerator(2024);
    const auto truth = torch::randn({5, 3}, generator);
    x_train = torch::randn({28, 5}, generator);
    y_train = x_train.mm(truth) + 0.1 * torch::randn({28, 3}, generator);
    x_valid = torch::randn({12, 5}, generator);
    y_valid = x_valid.mm(truth) + 0.1 * torch::randn({12, 3}, generator);
  }
};

// What a callback saw: each validation (whether closing) and where the run stood at on_stop.
struct Events : downhill::Callback {
  std::vector<bool> validations_closing;
  std::optional<StopReason> stop;
  int64_t stop_pass_steps = -1;
  int64_t stop_updates = -1;

  void on_validation(const downhill::RunView& run) override {
    validations_closing.push_back(run.closing);
  }
  void on_stop(const downhill::RunView& run) override {
    stop = run.stop;
    stop_pass_steps = run.pass_steps;
    stop_updates = run.updates;
  }
};

// One problem: parameters w, b filled with `initial`, shuffled datasets with generators of
// their own (seeded from `seed`, so that their orders do not depend on the validations), and
// a loss that counts its training calls and makes the one numbered `nan_at` NaN.
struct Problem {
  Problem(const Data& data, double initial, uint64_t seed)
      : w(torch::full({5, 3}, initial, torch::requires_grad())),
        b(torch::full({3}, initial, torch::requires_grad())),
        train({data.x_train, data.y_train},
              downhill::DatasetOptions().batch_size(4).name("train").generator(
                  at::detail::createCPUGenerator(seed))),
        valid({data.x_valid, data.y_valid},
              downhill::DatasetOptions().batch_size(4).iteration_size(2).name("valid").generator(
                  at::detail::createCPUGenerator(seed + 1))) {}

  downhill::Loss loss() {
    return [this](const downhill::Batch& batch) -> downhill::Evaluation {
      auto error = batch[0].mm(w) + b - batch[1];
      auto value = error.square().mean();
      if (downhill::current_phase() == downhill::Phase::kTraining && ++training_calls == nan_at) {
        value = value * std::numeric_limits<double>::quiet_NaN();
      }
      return {value, {{"abs_err", error.abs().mean()}}};
    };
  }
  std::unique_ptr<downhill::Optimizer> build(const std::string& algo,
                                             const downhill::Options& options) {
    return downhill::build(algo, loss(), {{"w", w}, {"b", b}}, options);
  }
  std::vector<torch::Tensor> values() const { return {w.detach().clone(), b.detach().clone()}; }

  torch::Tensor w, b;
  downhill::Dataset train, valid;
  int64_t training_calls = 0;
  int64_t nan_at = -1;
};

// Everything observable about one run.
struct Trace {
  std::vector<downhill::Monitors> training, validation;   // the yielded items
  std::vector<std::vector<torch::Tensor>> params, state;  // after each item
  std::vector<int64_t> updates;                           // update_count() after each item
  std::vector<torch::Tensor> final_params, final_state;
  int64_t final_updates = -1;
  downhill::RunSummary summary;
};

std::vector<torch::Tensor> state_of(downhill::Optimizer& opt) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, tensor] : opt.state()) out.push_back(tensor.detach().clone());
  return out;
}

Trace run_loop(Problem& problem, downhill::Optimizer& opt) {
  Trace trace;
  for (const auto& [training, validation] : opt.iterate(problem.train, &problem.valid)) {
    trace.training.push_back(training);
    trace.validation.push_back(validation);
    trace.params.push_back(problem.values());
    trace.state.push_back(state_of(opt));
    trace.updates.push_back(opt.update_count());
  }
  trace.final_params = problem.values();
  trace.final_state = state_of(opt);
  trace.final_updates = opt.update_count();
  trace.summary = opt.last_run();
  return trace;
}

// A slow, steady descent: every validation improves, so the closing one is the best and the
// parameters it restores are the last step's.
downhill::Options steady() {
  return downhill::Options().learning_rate(0.01).validate_every(10).patience(100);
}

// The parameters after `batches` calls of step() on a fresh problem built as `run_loop`'s
// (the validations the loop runs in between change no parameter and no training order).
std::vector<torch::Tensor> by_hand(const Data& data, const std::string& algo,
                                   const downhill::Options& options, int64_t batches) {
  Problem problem(data, 0.1, 42);
  auto opt = problem.build(algo, options);
  for (int64_t k = 0; k < batches; ++k) opt->step(problem.train.next());
  return problem.values();
}

std::string stopped_line(const std::string& reason, int64_t passes, int64_t updates) {
  return "info stopped (" + reason + ") after " + std::to_string(passes) + " passes and " +
         std::to_string(updates) + " updates";
}

class StepLimit : public ::testing::Test {
 protected:
  const Data data;

 private:
  downhill::testing::ScopedLogLevel quiet_{spdlog::level::off};
};

// ---- max_passes, and max_updates as its seed's name ----

TEST_F(StepLimit, MaxPassesStopsAfterThatManyPasses) {
  Problem problem(data, 0.1, 42);
  auto opt = problem.build("sgd", steady().max_passes(3));
  auto events = std::make_shared<Events>();
  opt->add_callback(events);
  LogCapture log;
  const Trace trace = run_loop(problem, *opt);
  EXPECT_EQ(trace.training.size(), 3u);
  EXPECT_EQ(problem.training_calls, 3 * kBatchesPerPass);
  EXPECT_EQ(trace.final_updates, 3 * kBatchesPerPass);
  EXPECT_EQ(trace.summary.stop, StopReason::kMaxPasses);
  EXPECT_EQ(trace.summary.passes, 3);
  // validate_every(10): before pass 1, then the closing validation.
  EXPECT_EQ(events->validations_closing, (std::vector<bool>{false, true}));
  EXPECT_THAT(log.text(), HasSubstr(stopped_line("max_passes", 3, 3 * kBatchesPerPass)));
}

TEST_F(StepLimit, MaxUpdatesIsTheSeedsNameForTheSameSetting) {
  using downhill::Options;
  EXPECT_EQ(Options().max_updates(3).max_passes(), 3);
  EXPECT_EQ(Options().max_passes(4).max_updates(), 4);
  // One value under two names: the last one set wins, whichever name it was set by.
  EXPECT_EQ(Options().max_passes(4).max_updates(6).max_passes(), 6);
  EXPECT_FALSE(Options().max_updates(6).max_passes(std::nullopt).max_updates().has_value());
  EXPECT_EQ(Options().set("max_updates", 5).get<std::optional<int64_t>>("max_passes"), 5);
  EXPECT_EQ(Options().set("max_passes", 8).get<std::optional<int64_t>>("max_updates"), 8);
  ASSERT_TRUE(downhill::find_setting("max_updates").has_value());
  EXPECT_EQ(*downhill::find_setting("max_updates"), *downhill::find_setting("max_passes"));
  // settings() and the log list it once, under its clear name.
  int listed = 0;
  for (const auto& [name, value] : Options().max_updates(2).settings()) {
    EXPECT_NE(name, "max_updates");
    if (name == "max_passes") {
      EXPECT_EQ(value, "2");
      ++listed;
    }
  }
  EXPECT_EQ(listed, 1);
  EXPECT_EQ(StopReason::kMaxUpdates, StopReason::kMaxPasses);

  // A run limited by max_updates is the run limited by max_passes, bit for bit.
  Problem by_passes(data, 0.1, 42);
  auto passes_opt = by_passes.build("adam", steady().max_passes(2));
  const Trace passes = run_loop(by_passes, *passes_opt);
  Problem by_updates(data, 0.1, 42);
  auto updates_opt = by_updates.build("adam", steady().max_updates(2));
  LogCapture log;
  const Trace updates = run_loop(by_updates, *updates_opt);
  EXPECT_EQ(updates.training.size(), 2u);
  EXPECT_EQ(by_updates.training_calls, 2 * kBatchesPerPass);
  EXPECT_EQ(updates.summary.stop, StopReason::kMaxUpdates);
  EXPECT_TRUE(same_tensors(updates.final_params, passes.final_params));
  EXPECT_THAT(log.text(), HasSubstr(stopped_line("max_passes", 2, 2 * kBatchesPerPass)));
}

// ---- max_steps ----

TEST_F(StepLimit, MaxStepsStopsInsideAPassRightAfterThatManyUpdates) {
  // 10 = 7 + 3: pass 1 whole, then 3 batches of pass 2.
  constexpr int64_t kSteps = 10;
  Problem problem(data, 0.1, 42);
  auto opt = problem.build("sgd", steady().max_steps(kSteps));
  auto events = std::make_shared<Events>();
  opt->add_callback(events);
  LogCapture log;
  const Trace trace = run_loop(problem, *opt);
  EXPECT_EQ(trace.training.size(), 1u);  // pass 2 was left unfinished: no item
  EXPECT_EQ(problem.training_calls, kSteps);
  EXPECT_EQ(trace.final_updates, kSteps);
  EXPECT_EQ(trace.summary.stop, StopReason::kMaxSteps);
  EXPECT_EQ(std::string(downhill::to_string(trace.summary.stop)), "max_steps");
  EXPECT_EQ(trace.summary.passes, 1);
  EXPECT_EQ(trace.summary.updates, kSteps);
  EXPECT_EQ(events->stop, StopReason::kMaxSteps);
  EXPECT_EQ(events->stop_pass_steps, kSteps - kBatchesPerPass);
  EXPECT_EQ(events->stop_updates, kSteps);
  // Closed as a max_passes stop: validated once more, and that closing validation (of the
  // parameters after update 10) is the best, so they are the parameters left.
  EXPECT_EQ(events->validations_closing, (std::vector<bool>{false, true}));
  EXPECT_EQ(trace.summary.best_validation, 2);
  EXPECT_TRUE(same_tensors(trace.final_params, by_hand(data, "sgd", steady(), kSteps)));
  EXPECT_FALSE(same_tensors(trace.final_params, by_hand(data, "sgd", steady(), kSteps + 1)));
  EXPECT_THAT(log.text(), HasSubstr(stopped_line("max_steps", 1, kSteps)));
}

TEST_F(StepLimit, AfterAMaxStepsStopTheBestParametersComeBackAsAfterAMaxPassesStop) {
  // A learning rate far too large: each update makes the loss worse (still finite), so the
  // first validation, of the initial parameters, stays the best, and both stops restore it.
  const auto climbing = downhill::Options().learning_rate(10.0).validate_every(10).patience(100);
  const struct {
    downhill::Options options;
    StopReason stop;
    int64_t updates;
  } cases[] = {
      {downhill::Options(climbing).max_steps(4), StopReason::kMaxSteps, 4},
      {downhill::Options(climbing).max_passes(1), StopReason::kMaxPasses, kBatchesPerPass}};
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(downhill::to_string(c.stop)));
    Problem problem(data, 0.1, 42);
    auto opt = problem.build("sgd", c.options);
    const Trace trace = run_loop(problem, *opt);
    EXPECT_EQ(trace.summary.stop, c.stop);
    EXPECT_EQ(trace.final_updates, c.updates);
    // The last step's parameters were worse than the initial ones: the closing validation
    // did not improve.
    EXPECT_EQ(trace.summary.validations, 2);
    EXPECT_EQ(trace.summary.best_validation, 1);
    EXPECT_TRUE(same_tensors(trace.final_params, Problem(data, 0.1, 42).values()));
  }
}

TEST_F(StepLimit, MaxStepsReachedAtAPassesLastBatchEndsThatPassFirst) {
  constexpr int64_t kSteps = 2 * kBatchesPerPass;
  Problem problem(data, 0.1, 42);
  auto opt = problem.build("sgd", steady().max_steps(kSteps));
  auto events = std::make_shared<Events>();
  opt->add_callback(events);
  LogCapture log;
  const Trace trace = run_loop(problem, *opt);
  EXPECT_EQ(trace.training.size(), 2u);  // pass 2 ended, counted and yielded
  EXPECT_EQ(problem.training_calls, kSteps);
  EXPECT_EQ(trace.summary.passes, 2);
  EXPECT_EQ(trace.summary.stop, StopReason::kMaxSteps);
  EXPECT_EQ(events->stop_pass_steps, 0);
  EXPECT_EQ(events->validations_closing, (std::vector<bool>{false, true}));
  EXPECT_THAT(log.text(), HasSubstr(stopped_line("max_steps", 2, kSteps)));
}

TEST_F(StepLimit, WithAccumulateTwoKUpdatesTakeTwoKBatches) {
  // 5 updates = 10 batches = pass 1 (7 batches: 3 updates and half a window) + 3 batches.
  constexpr int64_t kSteps = 5;
  const auto options = steady().accumulate(2);
  Problem problem(data, 0.1, 42);
  auto opt = problem.build("sgd", downhill::Options(options).max_steps(kSteps));
  auto events = std::make_shared<Events>();
  opt->add_callback(events);
  const Trace trace = run_loop(problem, *opt);
  EXPECT_EQ(problem.training_calls, 2 * kSteps);
  EXPECT_EQ(trace.final_updates, kSteps);
  EXPECT_EQ(trace.training.size(), 1u);
  EXPECT_EQ(trace.updates.at(0), kBatchesPerPass / 2);
  EXPECT_EQ(events->stop_pass_steps, 2 * kSteps - kBatchesPerPass);
  EXPECT_EQ(trace.summary.stop, StopReason::kMaxSteps);
  EXPECT_TRUE(same_tensors(trace.final_params, by_hand(data, "sgd", options, 2 * kSteps)));
}

TEST_F(StepLimit, SkippedUpdatesDoNotCount) {
  // The 4th training batch's loss is NaN: its update is skipped, so the 10th update comes
  // with the 11th batch.
  constexpr int64_t kSteps = 10;
  Problem problem(data, 0.1, 42);
  problem.nan_at = 4;
  auto opt = problem.build("sgd", steady().max_steps(kSteps));
  const Trace trace = run_loop(problem, *opt);
  EXPECT_EQ(problem.training_calls, kSteps + 1);
  EXPECT_EQ(trace.final_updates, kSteps);
  EXPECT_EQ(trace.training.at(0).at("skipped"), 1.0);
  EXPECT_EQ(trace.summary.stop, StopReason::kMaxSteps);
}

TEST_F(StepLimit, UpdatesOfEarlierRunsOfTheOptimizerCount) {
  // update_count() belongs to the optimizer and carries on across runs, as max_steps does.
  Problem problem(data, 0.1, 42);
  auto opt = problem.build("sgd", steady().max_steps(3));
  run_loop(problem, *opt);
  ASSERT_EQ(problem.training_calls, 3);
  const Trace again = run_loop(problem, *opt);
  EXPECT_EQ(problem.training_calls, 3);
  EXPECT_TRUE(again.training.empty());
  EXPECT_EQ(again.summary.stop, StopReason::kMaxSteps);
  opt->change_options([](downhill::Options& o) { o.max_steps(5); });
  run_loop(problem, *opt);
  EXPECT_EQ(problem.training_calls, 5);
}

TEST_F(StepLimit, TheFirstLimitReachedStopsTheRun) {
  Problem passes_first(data, 0.1, 42);
  auto opt = passes_first.build("sgd", steady().max_passes(1).max_steps(100));
  EXPECT_EQ(run_loop(passes_first, *opt).summary.stop, StopReason::kMaxPasses);
  EXPECT_EQ(passes_first.training_calls, kBatchesPerPass);
  Problem steps_first(data, 0.1, 42);
  opt = steps_first.build("sgd", steady().max_passes(5).max_steps(3));
  EXPECT_EQ(run_loop(steps_first, *opt).summary.stop, StopReason::kMaxSteps);
  EXPECT_EQ(steps_first.training_calls, 3);
}

// ---- A checkpoint at the max_steps stop ----

class StepLimitResume : public StepLimit {
 protected:
  static downhill::Options options() {
    return downhill::Options().learning_rate(0.05).momentum(0.5).validate_every(2).patience(100);
  }
  TemporaryFolder folder{"step_limit_resume"};
};

TEST_F(StepLimitResume, ACheckpointAtTheStopResumesExactly) {
  // 10 updates: the checkpoint holds pass 2 after 3 of its 7 batches. 24 = 3 · 7 + 3.
  constexpr int64_t kFirst = 10, kLimit = 24;
  Problem straight_problem(data, 0.1, 42);
  auto straight_opt = straight_problem.build("adam", options().max_steps(kLimit));
  const Trace straight = run_loop(straight_problem, *straight_opt);
  ASSERT_EQ(straight.training.size(), 3u);
  ASSERT_EQ(straight.final_updates, kLimit);

  const auto path = folder.file("run.ckpt");
  Problem first_problem(data, 0.1, 42);
  auto first_opt = first_problem.build("adam", options().max_steps(kFirst).checkpoint(path));
  const Trace first = run_loop(first_problem, *first_opt);
  ASSERT_EQ(first.summary.stop, StopReason::kMaxSteps);
  ASSERT_EQ(first_problem.training_calls, kFirst);

  {
    SCOPED_TRACE("resumed with the same max_steps: nothing more is trained");
    Problem problem(data, -0.7, 7);
    auto opt = problem.build("adam", options().max_steps(kFirst).checkpoint(path).resume(true));
    const Trace resumed = run_loop(problem, *opt);
    EXPECT_EQ(problem.training_calls, 0);
    EXPECT_TRUE(resumed.training.empty());
    EXPECT_EQ(resumed.final_updates, kFirst);
    EXPECT_EQ(resumed.summary.stop, StopReason::kMaxSteps);
    EXPECT_EQ(resumed.summary.passes, 1);
    EXPECT_TRUE(same_tensors(resumed.final_params, first.final_params));
    EXPECT_TRUE(same_tensors(resumed.final_state, first.final_state));
  }
  {
    SCOPED_TRACE("resumed with a larger max_steps: the straight run goes on");
    Problem problem(data, -0.7, 7);
    auto opt = problem.build("adam", options().max_steps(kLimit).checkpoint(path).resume(true));
    const Trace resumed = run_loop(problem, *opt);
    EXPECT_EQ(problem.training_calls, kLimit - kFirst);
    // It finishes pass 2, then trains pass 3 and 3 batches of pass 4: the straight run's
    // items 2 and 3, bit for bit.
    ASSERT_EQ(resumed.training.size(), 2u);
    for (size_t k = 0; k < resumed.training.size(); ++k) {
      SCOPED_TRACE("pass " + std::to_string(k + 2));
      EXPECT_TRUE(same_bits(resumed.training[k], straight.training[k + 1]))
          << resumed.training[k].to_string() << " resumed, " << straight.training[k + 1].to_string()
          << " straight";
      EXPECT_TRUE(same_bits(resumed.validation[k], straight.validation[k + 1]));
      EXPECT_TRUE(same_tensors(resumed.params[k], straight.params[k + 1]));
      EXPECT_TRUE(same_tensors(resumed.state[k], straight.state[k + 1]));
      EXPECT_EQ(resumed.updates[k], straight.updates[k + 1]);
    }
    EXPECT_TRUE(same_tensors(resumed.final_params, straight.final_params));
    EXPECT_TRUE(same_tensors(resumed.final_state, straight.final_state));
    EXPECT_EQ(resumed.final_updates, kLimit);
    EXPECT_EQ(resumed.summary.stop, StopReason::kMaxSteps);
    EXPECT_EQ(resumed.summary.passes, straight.summary.passes);
    EXPECT_EQ(resumed.summary.validations, straight.summary.validations);
    EXPECT_EQ(resumed.summary.best_validation, straight.summary.best_validation);
    EXPECT_TRUE(same_bits(resumed.summary.best, straight.summary.best));
  }
}

// ---- Invalid limits ----

TEST_F(StepLimit, InvalidLimitsAreRefusedNamingTheSettingTheValueAndWhatIsAllowed) {
  using downhill::Options;
  const struct {
    const char* setting;
    const char* value;
    std::function<Options()> make;
  } cases[] = {
      {"max_steps", "0", [] { return Options().max_steps(0); }},
      {"max_steps", "-3", [] { return Options().max_steps(-3); }},
      {"max_passes", "0", [] { return Options().max_passes(0); }},
      {"max_passes", "-1", [] { return Options().max_passes(-1); }},
      // Set by its seed's name, the message names both.
      {"max_updates", "0", [] { return Options().max_updates(0); }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.setting) + " = " + c.value);
    auto x = torch::ones({2}, torch::requires_grad());
    const auto message = message_of<std::invalid_argument>([&] {
      downhill::build(
          "sgd", [x](const downhill::Batch&) -> downhill::Evaluation { return (x * x).sum(); },
          {{"x", x}}, c.make());
    });
    EXPECT_THAT(message, AllOf(HasSubstr(c.setting), HasSubstr(std::string("= ") + c.value),
                               HasSubstr("allowed: an integer >= 1")));
  }
  EXPECT_THAT(message_of<std::invalid_argument>([] { Options().max_updates(0).validate(); }),
              HasSubstr("setting max_passes (or max_updates) = 0"));
  EXPECT_THAT(message_of<std::invalid_argument>([] { Options().set("max_steps", 2.5); }),
              HasSubstr("max_steps cannot take 2.5"));
  EXPECT_NO_THROW(Options().max_steps(1).max_passes(1).validate());
  EXPECT_NO_THROW(Options().max_steps(std::nullopt).validate());
}

}  // namespace
