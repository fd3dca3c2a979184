// What a run reports: the phase the loss is evaluated in (a real module with Dropout and
// BatchNorm), last_run() and the closing log lines for every way a run stops, settings for
// one run, and the history file (one line per pass, no duplicate and no gap across resumes
// and kills).
#include <downhill/downhill.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "child_process.h"
#include "history_problem.h"
#include "same_bits.h"
#include "test_support.h"

namespace {

using downhill::Phase;
using downhill::StopReason;
using downhill::testing::LogCapture;
using downhill::testing::message_of;
using ::testing::HasSubstr;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

class QuietLogs : public ::testing::Environment {
 public:
  void SetUp() override { downhill::logger()->set_level(spdlog::level::off); }
};
[[maybe_unused]] const auto* const kQuietLogs = ::testing::AddGlobalTestEnvironment(new QuietLogs);

using downhill::testing::TemporaryFolder;

// Equal, or both NaN.
bool same_value(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

bool same_monitors(const downhill::Monitors& a, const downhill::Monitors& b) {
  if (a.size() != b.size()) return false;
  auto x = a.begin();
  for (const auto& [name, value] : b) {
    if (x->first != name || !same_value(x->second, value)) return false;
    ++x;
  }
  return true;
}

using downhill::testing::same_bits;
using downhill::testing::same_tensors;

std::vector<torch::Tensor> snapshot(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.detach().clone());
  return out;
}

// Whether `text` has a line that is exactly `line`.
bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l == line) return true;
  }
  return false;
}

int lines_starting_with(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  int count = 0;
  for (std::string l; std::getline(in, l);) count += l.rfind(prefix, 0) == 0 ? 1 : 0;
  return count;
}

// ------------------------------------------------------------------------------------------
// (1) Training and validation phases, with a module holding Dropout and BatchNorm
// ------------------------------------------------------------------------------------------

struct NetImpl : torch::nn::Module {
  NetImpl()
      : fc1(register_module("fc1", torch::nn::Linear(4, 16))),
        bn(register_module("bn", torch::nn::BatchNorm1d(16))),
        dropout(register_module("dropout", torch::nn::Dropout(0.5))),
        fc2(register_module("fc2", torch::nn::Linear(16, 1))) {}

  // The prediction, and how many activations Dropout zeroed.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x) {
    const auto hidden = torch::relu(bn(fc1(x)));
    const auto kept = dropout(hidden);
    const auto zeroed = kept.eq(0).logical_and(hidden.ne(0)).sum().to(torch::kFloat64);
    return {fc2(kept).squeeze(1), zeroed};
  }

  torch::nn::Linear fc1;
  torch::nn::BatchNorm1d bn;
  torch::nn::Dropout dropout;
  torch::nn::Linear fc2;
};
TORCH_MODULE(Net);

class PhaseNet : public ::testing::Test {
 protected:
  struct Call {
    Phase phase;
    bool grad;
  };

  PhaseNet() {
    torch::manual_seed(11);
    net = Net();
    x = torch::randn({64, 4});
    y = x.sum(1) + 0.1 * torch::randn({64});
  }

  // The loss the guide shows: the module follows the phase.
  downhill::Loss loss() {
    return [this](const downhill::Batch& batch) -> downhill::Evaluation {
      const Phase phase = downhill::current_phase();
      calls.push_back({phase, torch::GradMode::is_enabled()});
      if (probe_other_thread) {
        std::thread([this] { other_thread_phase = downhill::current_phase(); }).join();
      }
      if (fail) throw std::runtime_error("the model failed on purpose");
      net->train(phase == Phase::kTraining);
      const auto [prediction, zeroed] = net->forward(batch[0]);
      return {torch::mse_loss(prediction, batch[1]), {{"dropped", zeroed}}};
    };
  }
  std::unique_ptr<downhill::Optimizer> build(const std::string& algo,
                                             const downhill::Options& options = {}) {
    return downhill::build(algo, loss(), net->named_parameters(), options);
  }
  // The data in order, in batches of `batch_size`.
  downhill::Dataset data(int64_t batch_size) const {
    return downhill::Dataset({x, y},
                             downhill::DatasetOptions().batch_size(batch_size).shuffle(false));
  }
  downhill::Batch first_batch() const { return {x.slice(0, 0, 16), y.slice(0, 0, 16)}; }
  std::vector<torch::Tensor> statistics() const {
    return snapshot({net->bn->running_mean, net->bn->running_var, net->bn->num_batches_tracked});
  }
  int count(Phase phase) const {
    return static_cast<int>(
        std::count_if(calls.begin(), calls.end(), [&](const Call& c) { return c.phase == phase; }));
  }
  // Every call: autograd on exactly in training; never outside an optimizer's call.
  void expect_grad_follows_phase() const {
    for (size_t k = 0; k < calls.size(); ++k) {
      EXPECT_NE(calls[k].phase, Phase::kNone) << "call " << k;
      EXPECT_EQ(calls[k].grad, calls[k].phase == Phase::kTraining)
          << "call " << k << ", phase " << downhill::to_string(calls[k].phase);
    }
  }
  static void expect_outside() {
    EXPECT_EQ(downhill::current_phase(), Phase::kNone)
        << downhill::to_string(downhill::current_phase());
    EXPECT_TRUE(torch::GradMode::is_enabled());
  }

  Net net{nullptr};
  torch::Tensor x, y;
  std::vector<Call> calls;
  bool fail = false;
  bool probe_other_thread = false;
  std::optional<Phase> other_thread_phase;
};

TEST(Phase, NamesAndTheDefaultOutsideAnyCall) {
  EXPECT_STREQ(downhill::to_string(Phase::kNone), "none");
  EXPECT_STREQ(downhill::to_string(Phase::kTraining), "training");
  EXPECT_STREQ(downhill::to_string(Phase::kValidation), "validation");
  EXPECT_EQ(downhill::current_phase(), Phase::kNone);
}

TEST_F(PhaseNet, StepIsTrainingWithAutogradAndMovesTheRunningStatistics) {
  auto opt = build("adam", downhill::Options().learning_rate(1e-2));
  const auto before = statistics();
  const auto monitors = opt->step(first_batch());
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].phase, Phase::kTraining);
  EXPECT_TRUE(calls[0].grad);
  EXPECT_TRUE(net->is_training());
  EXPECT_GT(monitors.at("dropped"), 0.0);
  EXPECT_EQ(opt->update_count(), 1);
  const auto after = statistics();
  EXPECT_FALSE(torch::equal(before[0], after[0])) << "running_mean";
  EXPECT_FALSE(torch::equal(before[1], after[1])) << "running_var";
  EXPECT_EQ(after[2].item<int64_t>(), before[2].item<int64_t>() + 1) << "num_batches_tracked";
  expect_outside();
}

TEST_F(PhaseNet, EvaluateIsARepeatableValidationWithoutAutogradThatKeepsTheStatistics) {
  auto opt = build("adam");
  // Move the running statistics away from their initial values first.
  opt->step(first_batch());
  calls.clear();
  auto valid = data(16);
  net->train(true);  // the loss, not the caller, puts the module in evaluation mode
  const auto before = statistics();
  const auto params = snapshot(opt->tensors());
  const auto first = opt->evaluate(valid);
  const auto second = opt->evaluate(valid);
  EXPECT_TRUE(same_bits(first, second)) << first.to_string() << " then " << second.to_string();
  EXPECT_EQ(first.at("dropped"), 0.0);
  EXPECT_FALSE(net->is_training());
  EXPECT_TRUE(same_tensors(before, statistics())) << "evaluate() moved BatchNorm's statistics";
  EXPECT_TRUE(same_tensors(params, opt->tensors()));
  ASSERT_EQ(calls.size(), 8u);  // two passes of four batches
  for (const auto& call : calls) {
    EXPECT_EQ(call.phase, Phase::kValidation);
    EXPECT_FALSE(call.grad);
  }
  expect_outside();
}

TEST_F(PhaseNet, DropoutDropsInTrainingOnly) {
  auto opt = build("sgd", downhill::Options().learning_rate(0.1));
  const auto batch = first_batch();
  const auto weights = snapshot(opt->tensors());
  // Two training evaluations of the same batch with the same weights (step() reports the
  // monitors computed before its update): only Dropout's masks differ between them.
  const auto trained = opt->step(batch);
  opt->set_params(weights);
  const auto trained_again = opt->step(batch);
  opt->set_params(weights);
  downhill::Dataset same_batch(batch, downhill::DatasetOptions().batch_size(0));
  const auto validated = opt->evaluate(same_batch);
  const auto validated_again = opt->evaluate(same_batch);
  EXPECT_GT(trained.at("dropped"), 0.0);
  EXPECT_GT(trained_again.at("dropped"), 0.0);
  EXPECT_EQ(validated.at("dropped"), 0.0);
  EXPECT_NE(trained.at("loss"), trained_again.at("loss"));
  EXPECT_NE(trained.at("loss"), validated.at("loss"));
  EXPECT_NE(trained_again.at("loss"), validated.at("loss"));
  EXPECT_EQ(validated.at("loss"), validated_again.at("loss"));
  expect_outside();
}

TEST_F(PhaseNet, TheLoopTrainsAndValidatesEachInItsPhaseAndItsBodyIsOutside) {
  auto opt =
      build("adam", downhill::Options().learning_rate(1e-3).validate_every(1).max_updates(2));
  auto train = data(16);
  auto valid = data(32);
  int passes = 0;
  for (const auto& [training, validation] : opt->iterate(train, &valid)) {
    ++passes;
    expect_outside();
    EXPECT_GT(training.at("dropped"), 0.0);
    EXPECT_EQ(validation.at("dropped"), 0.0);
    // An evaluate() of the caller's inside the body is a validation too, and leaves the body
    // outside again.
    const auto size = calls.size();
    opt->evaluate(valid);
    ASSERT_EQ(calls.size(), size + 2);
    EXPECT_EQ(calls.back().phase, Phase::kValidation);
    calls.resize(size);
    expect_outside();
  }
  EXPECT_EQ(passes, 2);
  EXPECT_EQ(count(Phase::kTraining), 2 * 4);
  EXPECT_EQ(count(Phase::kValidation), 3 * 2);  // before each pass, and the closing one
  expect_grad_follows_phase();
  expect_outside();
}

TEST_F(PhaseNet, MinimizeThroughDatasetsAndWithTheParametersFoundInTheGraph) {
  auto train = data(16);
  auto valid = data(32);
  const auto options =
      downhill::Options().algo("adam").learning_rate(1e-3).validate_every(1).max_updates(2);
  const auto [training, validation] =
      downhill::minimize(loss(), net->named_parameters(), train, valid, options);
  EXPECT_GT(training.at("dropped"), 0.0);
  EXPECT_EQ(validation.at("dropped"), 0.0);
  EXPECT_EQ(count(Phase::kTraining), 2 * 4);
  EXPECT_EQ(count(Phase::kValidation), 3 * 2);
  expect_grad_follows_phase();
  expect_outside();

  // Without parameters: they are found in the graph of the first training batch, evaluated
  // in the training phase (where BatchNorm's weights take part).
  calls.clear();
  LogCapture log;
  downhill::minimize(loss(), train, options);
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls[0].phase, Phase::kTraining);
  EXPECT_TRUE(calls[0].grad);
  EXPECT_THAT(log.text(), HasSubstr("found 6 parameters in the loss"));
  expect_grad_follows_phase();
  expect_outside();
}

TEST_F(PhaseNet, ThePhaseIsRestoredWhenTheLossThrows) {
  auto opt = build("adam");
  auto valid = data(32);
  fail = true;
  EXPECT_THROW(opt->step(first_batch()), std::runtime_error);
  expect_outside();
  EXPECT_THROW(opt->evaluate(valid), std::runtime_error);
  expect_outside();
  auto train = data(16);
  EXPECT_THROW(
      {
        for (const auto& item : opt->iterate(train, &valid)) (void)item;
      },
      std::runtime_error);
  expect_outside();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].phase, Phase::kTraining);
  EXPECT_EQ(calls[1].phase, Phase::kValidation);
  EXPECT_EQ(calls[2].phase, Phase::kValidation);  // the loop validates before its first pass
  expect_grad_follows_phase();
  // And the next call works as before.
  fail = false;
  opt->step(first_batch());
  EXPECT_EQ(calls.back().phase, Phase::kTraining);
  expect_outside();
}

TEST_F(PhaseNet, ThePhaseBelongsToTheThreadThatCalls) {
  auto opt = build("adam");
  probe_other_thread = true;
  opt->step(first_batch());
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].phase, Phase::kTraining);
  ASSERT_TRUE(other_thread_phase.has_value());
  EXPECT_EQ(*other_thread_phase, Phase::kNone);
}

// ------------------------------------------------------------------------------------------
// (2) last_run() and the closing log lines, for each way a run stops
// ------------------------------------------------------------------------------------------

// x, a scalar that SGD at rate 1 lowers by exactly 1 per training step (the training loss
// is x itself). Each validation scores the next value of `script`, or score(x) without a
// script; its monitors are that loss and x.
class Scripted {
 public:
  explicit Scripted(std::vector<double> script = {}) : script_(std::move(script)) {}

  downhill::Loss loss() {
    return [this](const downhill::Batch&) -> downhill::Evaluation {
      if (downhill::current_phase() == Phase::kValidation) return validation();
      const int64_t step = steps++;
      if (step == throw_at) throw std::runtime_error("the loss failed on purpose");
      if (step == interrupt_at) std::raise(SIGINT);  // as a Ctrl-C during this step
      if (nan_from >= 0 && step >= nan_from) return x.sum() * kNaN;
      return x.sum();
    };
  }
  std::unique_ptr<downhill::Optimizer> build(downhill::Options options) {
    return downhill::build("sgd", loss(), {{"x", x}}, options.learning_rate(1.0));
  }
  double value() const { return x.item<double>(); }

  torch::Tensor x = torch::zeros({1}, torch::dtype(torch::kFloat64).requires_grad(true));
  std::function<double(double)> score = [](double at) { return (at + 7) * (at + 7); };
  int64_t steps = 0;
  int64_t throw_at = -1;
  int64_t interrupt_at = -1;
  int64_t nan_from = -1;  // this training step and every later one have a NaN loss
  std::vector<downhill::Monitors> validations;  // every validation, as the loss scored it

 private:
  downhill::Evaluation validation() {
    const double at = value();
    const double loss = script_.empty() ? score(at) : script_.at(validations.size());
    downhill::Monitors monitors;
    monitors.set("loss", loss);
    monitors.set("x", at);
    validations.push_back(monitors);
    return {x.sum() * 0 + loss, {{"x", x.detach().sum()}}};
  }
  std::vector<double> script_;
};

// What the walk of one run saw.
struct Walked {
  std::vector<downhill::Monitors> training, validation;  // the items
  std::vector<downhill::RunSummary> inside;              // last_run() in the loop's body
  std::vector<int64_t> updates;                          // update_count() in the loop's body
  std::string error;                                     // what the walk threw, if anything
  bool diverged = false;                                 // it was a DivergenceError
};

// Walks opt.iterate(train, &valid), leaving the loop by `break` after `break_after` items
// (0: never), or by an exception from the body after `throw_after`.
Walked walk(downhill::Optimizer& opt, downhill::Dataset& train, downhill::Dataset& valid,
            size_t break_after = 0, size_t throw_after = 0) {
  Walked w;
  try {
    for (const auto& [training, validation] : opt.iterate(train, &valid)) {
      w.training.push_back(training);
      w.validation.push_back(validation);
      w.inside.push_back(opt.last_run());
      w.updates.push_back(opt.update_count());
      if (w.training.size() == break_after) break;
      if (w.training.size() == throw_after) throw std::runtime_error("the body failed on purpose");
    }
  } catch (const downhill::DivergenceError& e) {
    w.error = e.what();
    w.diverged = true;
  } catch (const std::exception& e) {
    w.error = e.what();
  }
  return w;
}

// A validation: the passes trained before it, and its monitors.
using Validation = std::pair<int64_t, downhill::Monitors>;

// The validations a walk yielded, in order: the one before pass p comes with item p when
// (p − 1) % every == 0.
std::vector<Validation> yielded_validations(const Walked& w, int64_t every) {
  std::vector<Validation> out;
  for (size_t p = 1; p <= w.validation.size(); ++p) {
    if ((p - 1) % static_cast<size_t>(every) == 0) {
      out.emplace_back(static_cast<int64_t>(p - 1), w.validation[p - 1]);
    }
  }
  return out;
}

struct Best {
  int64_t validation = 0;  // 1-based; 0: none was finite
  int64_t pass = 0;
  downhill::Monitors monitors;
};

// The loop's rule, independently: the first of the lowest finite losses.
Best best_of(const std::vector<Validation>& validations) {
  Best best;
  for (size_t j = 0; j < validations.size(); ++j) {
    const double loss = validations[j].second.at("loss");
    if (!std::isfinite(loss)) continue;
    if (best.validation == 0 || loss < best.monitors.at("loss")) {
      best = {static_cast<int64_t>(j + 1), validations[j].first, validations[j].second};
    }
  }
  return best;
}

// Checks the items against what the loss saw, and last_run() in the loop's body.
void expect_consistent_walk(const Walked& w, const std::vector<Validation>& validations,
                            const Scripted& problem) {
  ASSERT_LE(validations.size(), problem.validations.size());
  for (size_t j = 0; j < validations.size(); ++j) {
    EXPECT_TRUE(same_monitors(validations[j].second, problem.validations[j]))
        << "validation " << j + 1 << ": yielded " << validations[j].second.to_string()
        << ", scored " << problem.validations[j].to_string();
  }
  for (size_t k = 0; k < w.inside.size(); ++k) {
    EXPECT_EQ(w.inside[k].stop, StopReason::kNotStopped) << "in the body after pass " << k + 1;
    EXPECT_EQ(w.inside[k].passes, static_cast<int64_t>(k + 1));
    EXPECT_EQ(w.inside[k].updates, w.updates[k]);
  }
}

void expect_best(const downhill::RunSummary& run, const Best& best) {
  EXPECT_EQ(run.best_validation, best.validation);
  EXPECT_EQ(run.best_pass, best.pass);
  EXPECT_TRUE(same_monitors(run.best, best.monitors))
      << "best " << run.best.to_string() << ", expected " << best.monitors.to_string();
}

std::string stopped_line(std::string_view reason, int64_t passes, int64_t updates) {
  return "info stopped (" + std::string(reason) + ") after " + std::to_string(passes) +
         " passes and " + std::to_string(updates) + " updates";
}

std::string best_line(const downhill::RunSummary& run, const std::string& suffix = "") {
  return "info best: validation " + std::to_string(run.best_validation) + ", after pass " +
         std::to_string(run.best_pass) + ": " + run.best.to_string() + suffix;
}

constexpr const char* kNotRestored = " (not restored: the parameters are the last step's)";

class RunSummaryTest : public ::testing::Test {
 protected:
  // Three training steps per pass; one validation batch. Neither has tensors.
  downhill::Dataset train{downhill::Batch{}, downhill::DatasetOptions().iteration_size(3)};
  downhill::Dataset valid{downhill::Batch{}, downhill::DatasetOptions()};
};

TEST_F(RunSummaryTest, NothingIsStoppedBeforeAnyRun) {
  Scripted problem;
  auto opt = problem.build(downhill::Options());
  const auto run = opt->last_run();
  EXPECT_EQ(run.stop, StopReason::kNotStopped);
  EXPECT_TRUE(run.best.empty());
  EXPECT_EQ(run.best_pass, 0);
  EXPECT_EQ(run.validations, 0);
  EXPECT_EQ(run.best_validation, 0);
  EXPECT_EQ(run.passes, 0);
  EXPECT_EQ(run.updates, 0);
  // A range that is made but never walked starts no run.
  auto range = opt->iterate(train, &valid);
  EXPECT_EQ(opt->last_run().stop, StopReason::kNotStopped);
  EXPECT_EQ(problem.steps, 0);
  EXPECT_EQ(downhill::to_string(StopReason::kNotStopped), "not stopped");
  EXPECT_EQ(downhill::to_string(StopReason::kPatience), "patience");
  EXPECT_EQ(downhill::to_string(StopReason::kMaxPasses), "max_passes");
  // The seed's name of the pass limit is the same reason.
  EXPECT_EQ(StopReason::kMaxUpdates, StopReason::kMaxPasses);
  EXPECT_EQ(downhill::to_string(StopReason::kMaxSteps), "max_steps");
  EXPECT_EQ(downhill::to_string(StopReason::kInterrupted), "interrupted");
  EXPECT_EQ(downhill::to_string(StopReason::kDiverged), "diverged");
  EXPECT_EQ(downhill::to_string(StopReason::kLeft), "left");
}

TEST_F(RunSummaryTest, PatienceReportsTheBestValidationWithItsPassAndTheTotals) {
  // Validations before passes 1, 3, 5, 7 and 9 score 5, 3, 4, 4, 4: the second is the best,
  // and the fifth is the third without improvement, so the run stops before pass 9.
  Scripted problem({5, 3, 4, 4, 4, 7, 6});
  constexpr int64_t kEvery = 2;
  auto opt = problem.build(downhill::Options().validate_every(kEvery).patience(2));
  LogCapture log;
  const Walked w = walk(*opt, train, valid);
  const auto run = opt->last_run();
  EXPECT_EQ(w.error, "");
  EXPECT_EQ(run.stop, StopReason::kPatience);
  EXPECT_EQ(run.passes, static_cast<int64_t>(w.training.size()));
  EXPECT_EQ(run.passes, 8);
  EXPECT_EQ(run.updates, opt->update_count());
  EXPECT_EQ(run.updates, 3 * run.passes);
  EXPECT_EQ(run.validations, 5);
  ASSERT_EQ(problem.validations.size(), 5u);
  auto validations = yielded_validations(w, kEvery);
  ASSERT_EQ(validations.size(), 4u);
  expect_consistent_walk(w, validations, problem);
  // The validation that stopped the run is not yielded; it cannot be the best.
  validations.emplace_back(run.passes, problem.validations.back());
  const Best best = best_of(validations);
  expect_best(run, best);
  EXPECT_EQ(run.best_validation, 2);
  EXPECT_EQ(run.best_pass, 2);
  // The best validation's monitors came with pass best_pass + 1.
  EXPECT_TRUE(same_monitors(run.best, w.validation[static_cast<size_t>(run.best_pass)]));
  EXPECT_EQ(problem.value(), -3.0 * static_cast<double>(run.best_pass)) << "best restored";
  EXPECT_TRUE(has_line(log.text(), stopped_line("patience", 8, 24))) << log.text();
  EXPECT_TRUE(
      has_line(log.text(), "info best: validation 2, after pass 2: loss=3.000000 x=-6.000000"))
      << log.text();
  EXPECT_EQ(lines_starting_with(log.text(), "info stopped"), 1);

  // A second run of the same optimizer counts its own passes and validations afresh; the
  // update count carries on.
  opt->change_options([](downhill::Options& o) { o.max_updates(2); });
  walk(*opt, train, valid);
  const auto second = opt->last_run();
  EXPECT_EQ(second.stop, StopReason::kMaxUpdates);
  EXPECT_EQ(second.passes, 2);
  EXPECT_EQ(second.updates, 24 + 6);
  EXPECT_EQ(second.validations, 2);
  EXPECT_EQ(second.best_validation, 2);
  EXPECT_EQ(second.best_pass, 2);
  EXPECT_TRUE(same_monitors(second.best, problem.validations.back()));
  EXPECT_EQ(problem.value(), -12.0);
}

TEST_F(RunSummaryTest, MaxUpdatesCountsTheClosingValidationWhichCanBeTheBest) {
  // Validations before passes 1-3 score 5, 4, 3; the closing one, of the final parameters, 2.
  Scripted problem({5, 4, 3, 2});
  auto opt = problem.build(downhill::Options().validate_every(1).max_updates(3));
  LogCapture log;
  const Walked w = walk(*opt, train, valid);
  const auto run = opt->last_run();
  EXPECT_EQ(w.error, "");
  EXPECT_EQ(run.stop, StopReason::kMaxUpdates);
  EXPECT_EQ(run.passes, 3);
  EXPECT_EQ(run.passes, static_cast<int64_t>(w.training.size()));
  EXPECT_EQ(run.updates, 9);
  EXPECT_EQ(run.updates, opt->update_count());
  EXPECT_EQ(run.validations, 4);
  auto validations = yielded_validations(w, 1);
  ASSERT_EQ(validations.size(), 3u);
  expect_consistent_walk(w, validations, problem);
  // The closing validation is not yielded: the last item has the one before pass 3.
  ASSERT_EQ(problem.validations.size(), 4u);
  EXPECT_EQ(w.validation.back().at("loss"), 3.0);
  validations.emplace_back(run.passes, problem.validations.back());
  expect_best(run, best_of(validations));
  EXPECT_EQ(run.best_validation, 4);
  EXPECT_EQ(run.best_pass, 3);
  EXPECT_EQ(problem.value(), -9.0);
  EXPECT_TRUE(has_line(log.text(), stopped_line("max_passes", 3, 9))) << log.text();
  EXPECT_EQ(lines_starting_with(log.text(), "info stopped"), 1) << log.text();
  EXPECT_TRUE(
      has_line(log.text(), "info best: validation 4, after pass 3: loss=2.000000 x=-9.000000"))
      << log.text();
}

TEST_F(RunSummaryTest, MaxUpdatesWithTheBestInTheMiddleAndANaNValidation) {
  Scripted problem({5, kNaN, 1, 3, 2});
  auto opt = problem.build(downhill::Options().validate_every(1).max_updates(4));
  LogCapture log;
  const Walked w = walk(*opt, train, valid);
  const auto run = opt->last_run();
  EXPECT_EQ(run.stop, StopReason::kMaxUpdates);
  EXPECT_EQ(run.passes, 4);
  EXPECT_EQ(run.updates, 12);
  EXPECT_EQ(run.validations, 5);
  auto validations = yielded_validations(w, 1);
  expect_consistent_walk(w, validations, problem);
  validations.emplace_back(run.passes, problem.validations.back());
  expect_best(run, best_of(validations));
  EXPECT_EQ(run.best_validation, 3);
  EXPECT_EQ(run.best_pass, 2);
  EXPECT_TRUE(same_monitors(run.best, w.validation[static_cast<size_t>(run.best_pass)]));
  EXPECT_EQ(problem.value(), -6.0);
  EXPECT_TRUE(has_line(log.text(), stopped_line("max_passes", 4, 12))) << log.text();
  EXPECT_TRUE(has_line(log.text(), best_line(run))) << log.text();
}

TEST_F(RunSummaryTest, NoFiniteValidationLeavesTheBestEmptyAndSaysSo) {
  Scripted problem({kInf, kNaN, -kInf});
  auto opt = problem.build(downhill::Options().validate_every(1).max_updates(2));
  LogCapture log;
  const Walked w = walk(*opt, train, valid);
  const auto run = opt->last_run();
  EXPECT_EQ(run.stop, StopReason::kMaxUpdates);
  EXPECT_EQ(run.passes, 2);
  EXPECT_EQ(run.updates, 6);
  EXPECT_EQ(run.validations, 3);
  EXPECT_EQ(run.best_validation, 0);
  EXPECT_EQ(run.best_pass, 0);
  EXPECT_TRUE(run.best.empty()) << run.best.to_string();
  EXPECT_EQ(problem.value(), -6.0) << "the parameters are left as they are";
  EXPECT_TRUE(has_line(log.text(), stopped_line("max_passes", 2, 6))) << log.text();
  EXPECT_TRUE(has_line(log.text(), "info no validation was finite")) << log.text();
  EXPECT_EQ(lines_starting_with(log.text(), "info best:"), 0) << log.text();
}

TEST_F(RunSummaryTest, InterruptedInsideAPass) {
  // Ctrl-C during step 7, the second of pass 3: that step finishes, and the loop ends.
  Scripted problem({5, 3, 4});
  problem.interrupt_at = 7;
  auto opt = problem.build(downhill::Options().validate_every(1));
  LogCapture log;
  const Walked w = walk(*opt, train, valid);
  const auto run = opt->last_run();
  EXPECT_EQ(w.error, "");
  EXPECT_EQ(run.stop, StopReason::kInterrupted);
  EXPECT_EQ(run.passes, 2);
  EXPECT_EQ(run.passes, static_cast<int64_t>(w.training.size()));
  EXPECT_EQ(run.updates, 8);
  EXPECT_EQ(run.updates, opt->update_count());
  EXPECT_EQ(run.validations, 3);  // the third ran before the interrupted pass
  auto validations = yielded_validations(w, 1);
  expect_consistent_walk(w, validations, problem);
  validations.emplace_back(run.passes, problem.validations.back());
  expect_best(run, best_of(validations));
  EXPECT_EQ(run.best_validation, 2);
  EXPECT_EQ(run.best_pass, 1);
  EXPECT_EQ(problem.value(), -3.0);
  EXPECT_TRUE(has_line(log.text(), stopped_line("interrupted", 2, 8))) << log.text();
  EXPECT_EQ(lines_starting_with(log.text(), "info stopped"), 1) << log.text();
  EXPECT_TRUE(
      has_line(log.text(), "info best: validation 2, after pass 1: loss=3.000000 x=-3.000000"))
      << log.text();
}

TEST_F(RunSummaryTest, DivergedAfterMaxNonfiniteSkippedUpdates) {
  // Steps 4 and 5 (pass 2) and 6 (pass 3) have a NaN loss: the third skip in a row ends it.
  Scripted problem({5, 3, 4});
  problem.nan_from = 4;
  auto opt = problem.build(downhill::Options().validate_every(1).max_nonfinite(3));
  LogCapture log;
  const Walked w = walk(*opt, train, valid);
  const auto run = opt->last_run();
  EXPECT_TRUE(w.diverged) << w.error;
  EXPECT_THAT(w.error, HasSubstr("3 consecutive updates skipped, the last at pass 3, batch 1"));
  EXPECT_EQ(run.stop, StopReason::kDiverged);
  EXPECT_EQ(run.passes, 2);
  EXPECT_EQ(run.passes, static_cast<int64_t>(w.training.size()));
  EXPECT_EQ(run.updates, 4);
  EXPECT_EQ(run.updates, opt->update_count());
  EXPECT_EQ(run.validations, 3);
  auto validations = yielded_validations(w, 1);
  expect_consistent_walk(w, validations, problem);
  validations.emplace_back(run.passes, problem.validations.back());
  expect_best(run, best_of(validations));
  EXPECT_EQ(run.best_validation, 2);
  EXPECT_EQ(run.best_pass, 1);
  EXPECT_EQ(problem.value(), -3.0) << "best restored";
  EXPECT_TRUE(has_line(log.text(), stopped_line("diverged", 2, 4))) << log.text();
  EXPECT_EQ(lines_starting_with(log.text(), "info stopped"), 1) << log.text();
  EXPECT_TRUE(has_line(log.text(), best_line(run))) << log.text();
}

TEST_F(RunSummaryTest, LeftByBreakKeepsTheLastStepsParametersAndSaysSo) {
  Scripted problem({5, 3});
  auto opt = problem.build(downhill::Options().validate_every(1));
  LogCapture log;
  const Walked w = walk(*opt, train, valid, /*break_after=*/2);
  const auto run = opt->last_run();
  EXPECT_EQ(w.error, "");
  EXPECT_EQ(run.stop, StopReason::kLeft);
  EXPECT_EQ(run.passes, 2);
  EXPECT_EQ(run.updates, 6);
  EXPECT_EQ(run.updates, opt->update_count());
  EXPECT_EQ(run.validations, 2);
  const auto validations = yielded_validations(w, 1);
  expect_consistent_walk(w, validations, problem);
  expect_best(run, best_of(validations));
  EXPECT_EQ(run.best_validation, 2);
  EXPECT_EQ(run.best_pass, 1);
  EXPECT_EQ(problem.value(), -6.0) << "not restored";
  EXPECT_TRUE(has_line(log.text(), stopped_line("left", 2, 6))) << log.text();
  EXPECT_EQ(lines_starting_with(log.text(), "info stopped"), 1) << log.text();
  EXPECT_TRUE(has_line(log.text(),
                       "info best: validation 2, after pass 1: loss=3.000000 "
                       "x=-3.000000 (not restored: the parameters are the last "
                       "step's)"))
      << log.text();
  // restore_best() puts them back.
  opt->restore_best();
  EXPECT_EQ(problem.value(), -3.0);
}

TEST_F(RunSummaryTest, LeftByAnExceptionFromTheLossOrFromTheBody) {
  {
    SCOPED_TRACE("the loss throws during step 4, the second of pass 2");
    Scripted problem({5, 3});
    problem.throw_at = 4;
    auto opt = problem.build(downhill::Options().validate_every(1));
    LogCapture log;
    const Walked w = walk(*opt, train, valid);
    const auto run = opt->last_run();
    EXPECT_THAT(w.error, HasSubstr("pass 2, batch 2"));
    EXPECT_THAT(w.error, HasSubstr("the loss failed on purpose"));
    EXPECT_EQ(run.stop, StopReason::kLeft);
    EXPECT_EQ(run.passes, 1);
    EXPECT_EQ(run.updates, 4);
    EXPECT_EQ(run.updates, opt->update_count());
    EXPECT_EQ(run.validations, 2);
    auto validations = yielded_validations(w, 1);
    expect_consistent_walk(w, validations, problem);
    validations.emplace_back(run.passes, problem.validations.back());
    expect_best(run, best_of(validations));
    EXPECT_EQ(run.best_validation, 2);
    EXPECT_EQ(run.best_pass, 1);
    EXPECT_EQ(problem.value(), -4.0) << "not restored";
    EXPECT_TRUE(has_line(log.text(), stopped_line("left", 1, 4))) << log.text();
    EXPECT_TRUE(has_line(log.text(), best_line(run, kNotRestored))) << log.text();
  }
  {
    SCOPED_TRACE("the loop's body throws after pass 1");
    Scripted problem({5, 3});
    auto opt = problem.build(downhill::Options().validate_every(1));
    LogCapture log;
    const Walked w = walk(*opt, train, valid, 0, /*throw_after=*/1);
    const auto run = opt->last_run();
    EXPECT_EQ(w.error, "the body failed on purpose");
    EXPECT_EQ(run.stop, StopReason::kLeft);
    EXPECT_EQ(run.passes, 1);
    EXPECT_EQ(run.updates, 3);
    EXPECT_EQ(run.validations, 1);
    EXPECT_EQ(run.best_validation, 1);
    EXPECT_EQ(run.best_pass, 0);
    EXPECT_TRUE(has_line(log.text(), stopped_line("left", 1, 3))) << log.text();
    EXPECT_TRUE(has_line(log.text(), best_line(run, kNotRestored))) << log.text();
  }
}

TEST_F(RunSummaryTest, AResumedRunReportsTheSameBestAndTotalsAsTheStraightRun) {
  // Validations score (x + 7)²: 49, 16, 1, 4, 25, 64 after 0-5 passes; the third is the best
  // and patience(2) runs out at the sixth, before pass 6.
  const auto options = downhill::Options().validate_every(1).patience(2);
  Scripted straight_problem;
  auto straight = straight_problem.build(options);
  std::string straight_log;
  {
    LogCapture log;
    walk(*straight, train, valid);
    straight_log = log.text();
  }
  const auto expected = straight->last_run();
  ASSERT_EQ(expected.stop, StopReason::kPatience);
  ASSERT_EQ(expected.passes, 5);
  ASSERT_EQ(expected.validations, 6);
  ASSERT_EQ(expected.best_validation, 3);
  ASSERT_EQ(expected.best_pass, 2);
  EXPECT_TRUE(has_line(straight_log, stopped_line("patience", 5, 15))) << straight_log;
  EXPECT_TRUE(
      has_line(straight_log, "info best: validation 3, after pass 2: loss=1.000000 x=-6.000000"))
      << straight_log;

  // Stopped by max_updates after pass 3 (its checkpoint written at the stop), or left after
  // pass 4 (its checkpoint written after the pass); both after the best.
  TemporaryFolder folder("report_summary");
  struct FirstPart {
    const char* label;
    downhill::Options options;
    size_t break_after;
  };
  const std::vector<FirstPart> first_parts = {
      {"max_updates(3)", downhill::Options(options).max_updates(3), 0},
      {"break after pass 4", options, 4}};
  for (const auto& part : first_parts) {
    SCOPED_TRACE(part.label);
    const auto path = folder.file(std::string(part.label) + ".ckpt");
    {
      Scripted first_problem;
      auto first = first_problem.build(downhill::Options(part.options).checkpoint(path));
      walk(*first, train, valid, part.break_after);
    }
    Scripted resumed_problem;
    resumed_problem.x.detach().fill_(3.0);  // the checkpoint's values replace these
    auto resumed = resumed_problem.build(downhill::Options(options).checkpoint(path).resume(true));
    LogCapture log;
    walk(*resumed, train, valid);
    const auto run = resumed->last_run();
    EXPECT_EQ(run.stop, expected.stop);
    EXPECT_EQ(run.passes, expected.passes);
    EXPECT_EQ(run.updates, expected.updates);
    EXPECT_EQ(run.validations, expected.validations);
    EXPECT_EQ(run.best_validation, expected.best_validation);
    EXPECT_EQ(run.best_pass, expected.best_pass);
    EXPECT_TRUE(same_bits(run.best, expected.best))
        << run.best.to_string() << " resumed, " << expected.best.to_string() << " straight";
    EXPECT_EQ(resumed_problem.value(), straight_problem.value());
    EXPECT_TRUE(has_line(log.text(), stopped_line("patience", 5, 15))) << log.text();
    EXPECT_TRUE(has_line(log.text(), best_line(expected))) << log.text();
  }
}

// A run whose start throws (a checkpoint folder that does not exist, a checkpoint that does
// not load) must leave the previous run's summary as it was, not report it as left.
TEST_F(RunSummaryTest, ARunThatCannotStartDoesNotReportThePreviousRunAsLeft) {
  Scripted problem({5, 3, 4, 4, 4});
  auto opt = problem.build(downhill::Options().validate_every(2).patience(2));
  walk(*opt, train, valid);
  const auto previous = opt->last_run();
  ASSERT_EQ(previous.stop, StopReason::kPatience);
  ASSERT_EQ(previous.passes, 8);
  // The next run is refused at its start (begin()), before any step: its checkpoint's
  // folder does not exist.
  TemporaryFolder folder("report_cannot_start");
  const auto path = folder.file("missing/run.ckpt");
  opt->change_options([&](downhill::Options& o) { o.checkpoint(path); });
  LogCapture log;
  const Walked w = walk(*opt, train, valid);
  EXPECT_THAT(w.error, HasSubstr("does not exist"));
  EXPECT_EQ(problem.steps, 24);
  // last_run() is either still the previous run, or a run of nothing; not the previous
  // run's passes and best relabelled as a run that was left.
  const auto run = opt->last_run();
  const bool unchanged = run.stop == previous.stop && run.passes == previous.passes;
  const bool empty = run.stop == StopReason::kLeft && run.passes == 0 && run.validations == 0;
  EXPECT_TRUE(unchanged || empty) << "stop " << downhill::to_string(run.stop) << ", passes "
                                  << run.passes << ", validations " << run.validations
                                  << ", best_validation " << run.best_validation;
  EXPECT_FALSE(has_line(log.text(), stopped_line("left", 8, 24))) << log.text();
}

// ------------------------------------------------------------------------------------------
// (3) Settings for one run
// ------------------------------------------------------------------------------------------

class OneRunSettings : public RunSummaryTest {
 protected:
  OneRunSettings() {
    // Validation scores max(x, −1.5): it improves until x reaches −1.5, then stays.
    problem.score = [](double at) { return std::max(at, -1.5); };
    opt = downhill::build("sgd", problem.loss(), {{"x", problem.x}}, downhill::Options());
  }
  Scripted problem;
  std::unique_ptr<downhill::Optimizer> opt;
};

TEST_F(OneRunSettings, MinimizeRunsWithThemAndTheyStayChanged) {
  ASSERT_EQ(opt->options().learning_rate(), 1e-4);
  const auto [training, validation] = opt->minimize(train, &valid, [](downhill::Options& o) {
    o.learning_rate(0.25).patience(1).validate_every(1);
  });
  // x falls by 0.25 per step, 0.75 per pass: validations after 0-4 passes score 0, −0.75,
  // −1.5, −1.5, −1.5; the third is the best, and the fifth exhausts patience(1).
  const auto run = opt->last_run();
  EXPECT_EQ(run.stop, StopReason::kPatience);
  EXPECT_EQ(run.passes, 4);
  EXPECT_EQ(run.updates, 12);
  EXPECT_EQ(run.validations, 5);
  EXPECT_EQ(run.best_validation, 3);
  EXPECT_EQ(run.best_pass, 2);
  EXPECT_EQ(problem.value(), -1.5);
  // Pass 4 trained from x = −2.25: its losses −2.25, −2.5, −2.75 average to −2.5.
  EXPECT_EQ(training.at("loss"), -2.5);
  EXPECT_EQ(validation.at("loss"), -1.5);
  EXPECT_EQ(validation.at("x"), -2.25);
  EXPECT_EQ(opt->options().learning_rate(), 0.25);
  EXPECT_EQ(opt->options().patience(), 1);
  EXPECT_EQ(opt->options().validate_every(), 1);

  // The next run, without settings, keeps them: from x = −1.5 the first validation is the
  // best, and patience(1) stops the run before pass 3.
  const auto [training2, validation2] = opt->minimize(train, &valid);
  const auto second = opt->last_run();
  EXPECT_EQ(second.stop, StopReason::kPatience);
  EXPECT_EQ(second.passes, 2);
  EXPECT_EQ(second.updates, 18);
  EXPECT_EQ(second.best_validation, 1);
  EXPECT_EQ(training2.at("loss"), -2.5);  // −2.25, −2.5, −2.75 again
  EXPECT_EQ(problem.value(), -1.5);
}

TEST_F(OneRunSettings, AnInvalidSettingThrowsNamingItBeforeAnythingRuns) {
  opt->change_options([](downhill::Options& o) { o.learning_rate(0.25).max_updates(1); });
  const struct {
    const char* setting;
    downhill::GroupSettings change;
  } cases[] = {
      {"learning_rate", [](downhill::Options& o) { o.learning_rate(-1); }},
      {"patience", [](downhill::Options& o) { o.learning_rate(0.5).patience(-1); }},
      {"validate_every", [](downhill::Options& o) { o.validate_every(0); }},
      {"max_updates", [](downhill::Options& o) { o.max_updates(0); }},
      {"momentum", [](downhill::Options& o) { o.momentum(0.5); }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.setting);
    const std::string via_minimize =
        message_of<std::invalid_argument>([&] { opt->minimize(train, &valid, c.change); });
    EXPECT_THAT(via_minimize, HasSubstr(c.setting));
    const std::string via_iterate =
        message_of<std::invalid_argument>([&] { opt->iterate(train, &valid, c.change); });
    EXPECT_THAT(via_iterate, HasSubstr(c.setting));
    EXPECT_EQ(problem.steps, 0);
    EXPECT_TRUE(problem.validations.empty());
    EXPECT_EQ(problem.value(), 0.0);
    EXPECT_EQ(opt->update_count(), 0);
    EXPECT_EQ(opt->options().learning_rate(), 0.25);
    EXPECT_EQ(opt->options().patience(), 5);
    EXPECT_EQ(opt->options().validate_every(), 10);
    EXPECT_EQ(opt->options().max_updates().value_or(-1), 1);
    EXPECT_EQ(opt->options().momentum(), 0.0);
    EXPECT_EQ(opt->last_run().stop, StopReason::kNotStopped);
  }
}

TEST_F(OneRunSettings, IterateRunsWithThemAndTheyStayChanged) {
  // The settings are checked when iterate() is called and applied when the run starts
  // (after a checkpoint it resumes, if any, is loaded).
  const double before = opt->options().learning_rate();
  auto range = opt->iterate(train, &valid, [](downhill::Options& o) {
    o.learning_rate(0.5).max_updates(1).validate_every(1);
  });
  EXPECT_EQ(opt->options().learning_rate(), before);
  EXPECT_EQ(problem.steps, 0);
  std::vector<downhill::Monitors> training;
  for (const auto& item : range) training.push_back(item.first);
  ASSERT_EQ(training.size(), 1u);
  EXPECT_EQ(training[0].at("loss"), -0.5);  // 0, −0.5, −1
  EXPECT_EQ(opt->last_run().stop, StopReason::kMaxUpdates);
  EXPECT_EQ(opt->last_run().updates, 3);
  EXPECT_EQ(opt->options().learning_rate(), 0.5);
  EXPECT_EQ(opt->options().max_updates().value_or(-1), 1);
  EXPECT_EQ(problem.value(), -1.5);  // the closing validation scored −1.5, the best
}

// The checkpoint, loaded at begin(), must not put its own update settings (learning rate
// 0.25) back over the run's.
TEST_F(OneRunSettings, TheyHoldForARunThatResumesACheckpoint) {
  // A checkpoint of a run at learning rate 0.25 ...
  TemporaryFolder folder("report_one_run_resume");
  const auto path = folder.file("run.ckpt");
  opt->minimize(train, &valid, [&](downhill::Options& o) {
    o.learning_rate(0.25).max_updates(1).validate_every(1).checkpoint(path);
  });
  ASSERT_TRUE(std::filesystem::exists(path));
  // ... resumed by a fresh optimizer, with settings for this run: learning rate 0.5, two
  // passes. The run must use 0.5, and keep it afterwards (guide, "Settings for one run").
  Scripted resumed_problem;
  resumed_problem.score = problem.score;
  auto resumed = downhill::build("sgd", resumed_problem.loss(), {{"x", resumed_problem.x}},
                                 downhill::Options().validate_every(1).checkpoint(path));
  std::vector<downhill::Monitors> training;
  for (const auto& item : resumed->iterate(train, &valid, [](downhill::Options& o) {
         o.learning_rate(0.5).max_updates(2).resume(true);
       })) {
    training.push_back(item.first);
  }
  ASSERT_EQ(training.size(), 1u);
  // Pass 2 starts from x = −0.75 (after pass 1 at 0.25): −0.75, −1.25, −1.75 at 0.5.
  EXPECT_EQ(training[0].at("loss"), -1.25) << "the pass did not run at learning rate 0.5";
  EXPECT_EQ(resumed->options().learning_rate(), 0.5);
}

// ------------------------------------------------------------------------------------------
// (4) The history file
// ------------------------------------------------------------------------------------------

using Json = nlohmann::ordered_json;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The complete lines of `text` (a last line without its newline is left out).
std::vector<std::string> complete_lines(const std::string& text) {
  std::vector<std::string> out;
  size_t begin = 0;
  for (size_t end; (end = text.find('\n', begin)) != std::string::npos; begin = end + 1) {
    out.push_back(text.substr(begin, end - begin));
  }
  return out;
}

// Every line of the file, parsed; a failure for a line that does not parse or a file that
// does not end with a newline.
std::vector<Json> records_of(const std::string& path) {
  const std::string text = read_text(path);
  EXPECT_TRUE(text.empty() || text.back() == '\n') << "a partial last line in " << path;
  std::vector<Json> out;
  for (const auto& line : complete_lines(text)) {
    try {
      out.push_back(Json::parse(line));
    } catch (const std::exception& e) {
      ADD_FAILURE() << "line " << out.size() + 1 << " of " << path << " does not parse ("
                    << e.what() << "): " << line;
    }
  }
  return out;
}

// The pass of each record, as a list: closing records as −pass.
std::vector<int64_t> passes_of(const std::vector<Json>& records) {
  std::vector<int64_t> out;
  for (const auto& record : records) {
    const int64_t pass = record.at("pass").get<int64_t>();
    out.push_back(record.value("closing", false) ? -pass : pass);
  }
  return out;
}

// 1, 2, ..., n, then −n (the closing record).
std::vector<int64_t> passes_then_closing(int64_t n) {
  std::vector<int64_t> out;
  for (int64_t p = 1; p <= n; ++p) out.push_back(p);
  out.push_back(-n);
  return out;
}

// A record's monitors are the yielded ones, in order; NaN is null.
void expect_monitors(const Json& json, const downhill::Monitors& monitors,
                     const std::string& what) {
  ASSERT_TRUE(json.is_object()) << what;
  ASSERT_EQ(json.size(), monitors.size()) << what << ": " << json.dump();
  auto entry = json.begin();
  for (const auto& [name, value] : monitors) {
    EXPECT_EQ(entry.key(), name) << what;
    if (std::isnan(value)) {
      EXPECT_TRUE(entry.value().is_null()) << what << " " << name << ": " << entry.value();
    } else {
      ASSERT_TRUE(entry.value().is_number()) << what << " " << name << ": " << entry.value();
      EXPECT_EQ(entry.value().get<double>(), value) << what << " " << name;
    }
    ++entry;
  }
}

// A record without its "seconds", which no two runs share.
Json without_seconds(Json record) {
  record.erase("seconds");
  return record;
}

// Two histories hold the same records, seconds aside.
void expect_same_records(const std::vector<Json>& expected, const std::vector<Json>& actual) {
  ASSERT_EQ(expected.size(), actual.size());
  for (size_t k = 0; k < expected.size(); ++k) {
    EXPECT_EQ(without_seconds(expected[k]), without_seconds(actual[k]))
        << "line " << k + 1 << ":\n  expected " << expected[k].dump() << "\n  actual   "
        << actual[k].dump();
  }
}

// Seconds never go back, across resumes too.
void expect_seconds_grow(const std::vector<Json>& records) {
  double previous = 0.0;
  for (size_t k = 0; k < records.size(); ++k) {
    ASSERT_TRUE(records[k].at("seconds").is_number()) << "line " << k + 1;
    const double seconds = records[k].at("seconds").get<double>();
    EXPECT_GE(seconds, previous) << "line " << k + 1;
    previous = seconds;
  }
}

void append_to(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::app | std::ios::binary);
  out << text;
}

class History : public ::testing::Test {
 protected:
  const history_test::Data data;
  TemporaryFolder folder{"report_history"};
};

TEST_F(History, EveryPassHasOneLineThatMirrorsItsItemThenTheClosingOne) {
  constexpr int64_t kPasses = 7;
  const auto path = folder.file("run.jsonl");
  const auto trace = history_test::run(data, history_test::options(kPasses).history(path));
  ASSERT_EQ(trace.training.size(), static_cast<size_t>(kPasses));
  const auto records = records_of(path);
  ASSERT_EQ(passes_of(records), passes_then_closing(kPasses));
  const auto schedule = history_test::schedule();
  for (int64_t p = 1; p <= kPasses; ++p) {
    const auto k = static_cast<size_t>(p - 1);
    const std::string what = "pass " + std::to_string(p);
    SCOPED_TRACE(what);
    const Json& record = records[k];
    std::vector<std::string> keys;
    for (auto field = record.begin(); field != record.end(); ++field) keys.push_back(field.key());
    const bool validated = p % 2 == 1;  // validate_every(2): before passes 1, 3, 5, 7
    std::vector<std::string> expected_keys = {"pass", "updates", "seconds", "learning_rate",
                                              "train"};
    if (validated) expected_keys.insert(expected_keys.end(), {"validation", "valid_pass", "valid"});
    EXPECT_EQ(keys, expected_keys);
    EXPECT_EQ(trace.updates[k], history_test::kStepsPerPass * p);
    EXPECT_EQ(record.at("updates").get<int64_t>(), trace.updates[k]);
    EXPECT_EQ(record.at("learning_rate").get<double>(),
              history_test::kLearningRate * schedule(trace.updates[k] - 1));
    expect_monitors(record.at("train"), trace.training[k], what + " train");
    EXPECT_TRUE(record.at("train").at("nan").is_null());
    if (validated) {
      EXPECT_EQ(record.at("validation").get<int64_t>(), (p + 1) / 2);
      EXPECT_EQ(record.at("valid_pass").get<int64_t>(), p - 1);
      expect_monitors(record.at("valid"), trace.validation[k], what + " valid");
    }
  }
  expect_seconds_grow(records);
  // Seconds are written to the millisecond: "seconds": 0.123 — three decimals, no more.
  std::ifstream raw(path);
  for (std::string line; std::getline(raw, line);) {
    const auto at = line.find("\"seconds\": ");
    ASSERT_NE(at, std::string::npos) << line;
    const auto value = line.substr(at + 11, line.find(',', at) - (at + 11));
    const auto point = value.find('.');
    ASSERT_NE(point, std::string::npos) << value;
    EXPECT_EQ(value.size() - point - 1, 3u) << value;
  }
  // The closing validation, of the final parameters: the best here, so last_run() has it.
  const Json& closing = records.back();
  const auto& run = trace.summary;
  EXPECT_EQ(run.stop, StopReason::kMaxUpdates);
  EXPECT_FALSE(closing.contains("train"));
  EXPECT_EQ(closing.at("closing"), true);
  EXPECT_EQ(closing.at("updates").get<int64_t>(), run.updates);
  EXPECT_EQ(closing.at("learning_rate").get<double>(),
            history_test::kLearningRate * schedule(run.updates - 1));
  EXPECT_EQ(closing.at("validation").get<int64_t>(), run.validations);
  EXPECT_EQ(run.validations, 5);
  EXPECT_EQ(closing.at("valid_pass").get<int64_t>(), kPasses);
  ASSERT_EQ(run.best_validation, run.validations) << "the closing validation should be the best";
  expect_monitors(closing.at("valid"), run.best, "closing valid");
  // For the record: the first lines of the file.
  const auto lines = complete_lines(read_text(path));
  std::cout << "[ history ] the first lines of a history file:\n";
  for (size_t k = 0; k < 3 && k < lines.size(); ++k) std::cout << lines[k] << "\n";
}

TEST_F(History, AFreshRunReplacesAnExistingFile) {
  const auto path = folder.file("run.jsonl");
  const auto checkpoint = folder.file("run.ckpt");
  const auto reference = folder.file("reference.jsonl");
  history_test::run(data, history_test::options(2).history(reference));
  const auto expected = records_of(reference);
  ASSERT_EQ(passes_of(expected), passes_then_closing(2));
  // Junk, a record of another run and a partial line: all replaced.
  {
    std::ofstream out(path, std::ios::binary);
    out << "junk\n{\"pass\": 1, \"updates\": 99}\n{\"pass\": 2";
  }
  history_test::run(data, history_test::options(2).history(path));
  expect_same_records(expected, records_of(path));
  // resume(true) with no checkpoint file starts a fresh run too.
  append_to(path, "{\"pass\": 3, \"updates\": 99}\n");
  history_test::run(data,
                    history_test::options(2).history(path).checkpoint(checkpoint).resume(true));
  expect_same_records(expected, records_of(path));
  // And so does a run without resume(true) when a checkpoint file exists.
  ASSERT_TRUE(std::filesystem::exists(checkpoint));
  history_test::run(data, history_test::options(3).history(path).checkpoint(checkpoint));
  ASSERT_EQ(passes_of(records_of(path)), passes_then_closing(3));
  history_test::run(data, history_test::options(2).history(path).checkpoint(checkpoint));
  expect_same_records(expected, records_of(path));
}

TEST_F(History, AResumedRunAppendsEveryPassOnceWithOneClosingRecordAtTheEnd) {
  const auto straight_path = folder.file("straight.jsonl");
  const auto straight = history_test::run(data, history_test::options(20).history(straight_path));
  const auto expected = records_of(straight_path);
  ASSERT_EQ(passes_of(expected), passes_then_closing(20));

  const auto path = folder.file("resumed.jsonl");
  const auto checkpoint = folder.file("resumed.ckpt");
  history_test::run(data, history_test::options(10).history(path).checkpoint(checkpoint));
  ASSERT_EQ(passes_of(records_of(path)), passes_then_closing(10));
  // A kill in the middle of a line leaves it partial; the resumed run drops it.
  append_to(path, "{\"pass\": 11, \"updates\": 55, \"seco");
  const auto resumed = history_test::run(
      data, history_test::options(20).history(path).checkpoint(checkpoint).resume(true));
  ASSERT_EQ(resumed.passes.front(), 11);
  const auto records = records_of(path);
  EXPECT_EQ(passes_of(records), passes_then_closing(20));
  expect_same_records(expected, records);
  expect_seconds_grow(records);
  // The resumed run is the straight run continued, so its summary is the straight one's.
  EXPECT_EQ(resumed.summary.passes, straight.summary.passes);
  EXPECT_EQ(resumed.summary.updates, straight.summary.updates);
  EXPECT_EQ(resumed.summary.validations, straight.summary.validations);
  EXPECT_EQ(resumed.summary.best_validation, straight.summary.best_validation);
  EXPECT_EQ(resumed.summary.best_pass, straight.summary.best_pass);
  EXPECT_TRUE(same_bits(resumed.summary.best, straight.summary.best));
}

TEST_F(History, AResumedRunDropsThePassesAfterItsCheckpointAndAPartialLastLine) {
  const auto straight_path = folder.file("straight.jsonl");
  history_test::run(data, history_test::options(10).history(straight_path));
  const auto expected = records_of(straight_path);

  // Checkpoints after passes 4 and 8 only; the loop is left after pass 6, which writes none:
  // the history has passes 5 and 6 that the checkpoint does not.
  const auto path = folder.file("left.jsonl");
  const auto checkpoint = folder.file("left.ckpt");
  const auto options =
      history_test::options(10).history(path).checkpoint(checkpoint).checkpoint_every(4);
  const auto first = history_test::run(data, options, std::chrono::microseconds(0),
                                       [](int64_t pass) { return pass < 6; });
  ASSERT_EQ(first.summary.stop, StopReason::kLeft);
  ASSERT_EQ(passes_of(records_of(path)), (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  // A partial line that starts as a record of a pass the checkpoint holds.
  append_to(path, "{\"pass\": 3, \"updates\": 15");
  const auto resumed = history_test::run(data, downhill::Options(options).resume(true));
  ASSERT_EQ(resumed.passes.front(), 5);
  const auto records = records_of(path);
  EXPECT_EQ(passes_of(records), passes_then_closing(10));
  expect_same_records(expected, records);
}

TEST_F(History, AFolderThatDoesNotExistIsAnErrorNamingThePathBeforeAnyStep) {
  const auto path = folder.file("missing/run.jsonl");
  const std::string message = message_of<std::runtime_error>(
      [&] { history_test::run(data, history_test::options(2).history(path)); });
  EXPECT_THAT(message, HasSubstr(path));
}

TEST_F(History, AResumedRunFinishesThePassCtrlCStoppedAndWritesItOnce) {
  const auto straight_path = folder.file("straight.jsonl");
  history_test::run(data, history_test::options(8).history(straight_path));
  const auto expected = records_of(straight_path);
  ASSERT_EQ(passes_of(expected), passes_then_closing(8));
  // Ctrl-C in the body after pass 4 (before pass 5 a validation runs) or after pass 5 (none
  // runs before pass 6): the loop stops after the next pass's first step, and checkpoints
  // the pass in progress.
  for (const int64_t pass : {4, 5}) {
    SCOPED_TRACE("Ctrl-C after pass " + std::to_string(pass));
    const auto path = folder.file("interrupted" + std::to_string(pass) + ".jsonl");
    const auto checkpoint = folder.file("interrupted" + std::to_string(pass) + ".ckpt");
    const auto options = history_test::options(8).history(path).checkpoint(checkpoint);
    const auto first =
        history_test::run(data, options, std::chrono::microseconds(0), [&](int64_t done) {
          if (done == pass) std::raise(SIGINT);
          return true;
        });
    ASSERT_EQ(first.summary.stop, StopReason::kInterrupted);
    ASSERT_EQ(first.summary.passes, pass);
    ASSERT_EQ(first.summary.updates, history_test::kStepsPerPass * pass + 1);
    std::vector<int64_t> written;
    for (int64_t p = 1; p <= pass; ++p) written.push_back(p);
    ASSERT_EQ(passes_of(records_of(path)), written);
    const auto resumed = history_test::run(data, downhill::Options(options).resume(true));
    ASSERT_FALSE(resumed.passes.empty());
    EXPECT_EQ(resumed.passes.front(), pass + 1);
    const auto records = records_of(path);
    EXPECT_EQ(passes_of(records), passes_then_closing(8));
    expect_same_records(expected, records);
  }
}

// --- Killed and started again, many times: every pass once, as the straight run has it ---

using downhill::testing::Child;
using downhill::testing::read_until;

Child spawn_history_writer(const std::string& folder, int64_t passes, int64_t step_sleep_us) {
  return downhill::testing::spawn_child(
      {DOWNHILL_HISTORY_WRITER, folder, std::to_string(passes), std::to_string(step_sleep_us)});
}

// Kills and reaps, at the end of a test, the children that it has not reaped itself.
class Reaper {
 public:
  ~Reaper() {
    for (const pid_t pid : pids_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  void watch(pid_t pid) { pids_.push_back(pid); }
  void forget(pid_t pid) { std::erase(pids_, pid); }

 private:
  std::vector<pid_t> pids_;
};

// Runs the writer to its end; returns its output.
std::string run_to_the_end(const std::string& folder, int64_t passes, Reaper& reaper) {
  const Child child = spawn_history_writer(folder, passes, 0);
  reaper.watch(child.pid);
  const std::string output = read_until(child.output, "", [](const std::string&) { return false; });
  close(child.output);
  int status = 0;
  EXPECT_EQ(waitpid(child.pid, &status, 0), child.pid);
  reaper.forget(child.pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  return output;
}

// The passes a checkpoint of history_test's problem holds (0 when there is none yet).
int64_t checkpointed_passes(const std::string& path) {
  if (!std::filesystem::exists(path)) return 0;
  auto opt = downhill::build("adam", {{"w", torch::zeros({5, 3})}, {"b", torch::zeros({3})}},
                             downhill::Options().momentum(0.5));
  opt->load_checkpoint(path);
  return opt->last_run().passes;
}

TEST_F(History, KilledAndStartedAgainTheRunWritesEveryPassOnceAsTheStraightRunDoes) {
  constexpr int64_t kPasses = 60;
  constexpr int64_t kStepSleepUs = 1500;  // about 8 ms a pass
  constexpr int kMaxKills = 15;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(12);
  Reaper reaper;

  const auto straight_folder = folder.path() / "straight";
  std::filesystem::create_directories(straight_folder);
  EXPECT_THAT(run_to_the_end(straight_folder.string(), kPasses, reaper), HasSubstr("done"));
  const auto expected = records_of((straight_folder / "history.jsonl").string());
  ASSERT_EQ(passes_of(expected), passes_then_closing(kPasses));

  const auto killed_folder = folder.path() / "killed";
  std::filesystem::create_directories(killed_folder);
  const auto path = (killed_folder / "history.jsonl").string();
  std::mt19937 random(20240601);
  std::uniform_int_distribution<int> sleep_us(0, 40000);
  int kills = 0, partial_lines = 0, rounds = 0, ahead = 0;
  std::vector<size_t> lines_at_kills;  // whole lines in the history after each kill
  bool finished = false;
  while (!finished && kills < kMaxKills && std::chrono::steady_clock::now() < deadline) {
    ++rounds;
    const Child child = spawn_history_writer(killed_folder.string(), kPasses, kStepSleepUs);
    reaper.watch(child.pid);
    // Past its start-up (loading LibTorch): it has finished a pass, or the run.
    std::string output = read_until(child.output, "", [](const std::string& text) {
      return text.find("pass ") != std::string::npos || text.find("done") != std::string::npos;
    });
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us(random)));
    ASSERT_EQ(kill(child.pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(child.pid, &status, 0), child.pid);
    reaper.forget(child.pid);
    output = read_until(child.output, output, [](const std::string&) { return false; });
    close(child.output);
    if (WIFEXITED(status)) {  // it ended before the kill
      ASSERT_EQ(WEXITSTATUS(status), 0) << output;
      finished = true;
      break;
    }
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
    ++kills;
    // Whatever the kill cut, the whole lines are passes 1, 2, ... once each, in order (and
    // perhaps the closing record last).
    const std::string text = read_text(path);
    if (!text.empty() && text.back() != '\n') ++partial_lines;
    std::vector<int64_t> passes;
    for (const auto& line : complete_lines(text)) {
      const Json record = Json::parse(line, nullptr, false);
      ASSERT_FALSE(record.is_discarded()) << "after kill " << kills << ": " << line;
      passes.push_back(record.value("closing", false) ? -record.at("pass").get<int64_t>()
                                                      : record.at("pass").get<int64_t>());
    }
    lines_at_kills.push_back(passes.size());
    // The kills that left the history ahead of the checkpoint (a pass's line appended, its
    // checkpoint not yet written): the next start must drop those lines.
    if (checkpointed_passes((killed_folder / "run.ckpt").string()) <
        static_cast<int64_t>(
            std::count_if(passes.begin(), passes.end(), [](int64_t pass) { return pass > 0; }))) {
      ++ahead;
    }
    for (size_t k = 0; k < passes.size(); ++k) {
      const bool closing_last =
          k + 1 == passes.size() && passes[k] < 0 && -passes[k] == static_cast<int64_t>(k);
      ASSERT_TRUE(passes[k] == static_cast<int64_t>(k + 1) || closing_last)
          << "after kill " << kills << ", line " << k + 1 << " has pass " << passes[k];
    }
  }
  if (!finished) {
    EXPECT_THAT(run_to_the_end(killed_folder.string(), kPasses, reaper), HasSubstr("done"));
  }
  std::cout << "[ kill test ] " << kills << " SIGKILLs in " << rounds << " rounds, "
            << partial_lines << " left a partial last line, " << ahead
            << " left it ahead of the checkpoint; whole lines after each kill:";
  for (const size_t lines : lines_at_kills) std::cout << " " << lines;
  std::cout << (finished ? "; the run ended between two kills\n" : "; then run to its end\n");
  EXPECT_GE(kills, 3) << "too few kills landed before the run ended";
  const auto records = records_of(path);
  EXPECT_EQ(passes_of(records), passes_then_closing(kPasses));
  expect_same_records(expected, records);
  expect_seconds_grow(records);
  RecordProperty("kills", kills);
}

}  // namespace
