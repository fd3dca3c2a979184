// A resume that speaks: where a resumed run stands, a missing checkpoint that starts afresh
// (and says so), resume_required, for which a missing checkpoint is an error, and a re-run of
// a run that had stopped by itself, which does nothing and says so.
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "test_support.h"

namespace {

using downhill::testing::LogCapture;
using downhill::testing::message_of;
using downhill::testing::TemporaryFolder;
using ::testing::HasSubstr;

// Least squares on 8 samples in batches of 4 (2 batches a pass), validated before every pass.
std::string train(downhill::Options options) {
  auto w = torch::zeros({2}, torch::dtype(torch::kDouble).requires_grad(true));
  const auto x = torch::linspace(-1, 1, 16, torch::kDouble).reshape({8, 2});
  const auto y = x.matmul(torch::tensor({0.5, -1.0}, torch::kDouble));
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    return (batch[0].matmul(w) - batch[1]).square().mean();
  };
  downhill::Dataset data({x, y}, downhill::DatasetOptions().batch_size(4).shuffle(false));
  LogCapture capture;
  auto opt = downhill::build("sgd", loss, {{"w", w}},
                             options.learning_rate(0.1).validate_every(1).patience(100));
  opt->minimize(data);
  return capture.text();
}

TEST(ResumeMessages, AResumedRunSaysWhereItStands) {
  TemporaryFolder folder("resume_speaks");
  const auto path = folder.file("run.ckpt");
  // 2 passes of 2 batches: 4 updates; validations before passes 1 and 2 (the closing one
  // after pass 2 is not in the checkpoint written at the stop); the loss falls, so the 2nd
  // is the best, after pass 1.
  train(downhill::Options().checkpoint(path).max_updates(2));
  const auto log = train(downhill::Options().checkpoint(path).resume(true).max_updates(3));
  EXPECT_THAT(log, HasSubstr("info resumed from '" + path +
                             "': 2 passes and 4 updates done, 2 validations (the best: "
                             "validation 2, after pass 1)"));
}

TEST(ResumeMessages, AMissingCheckpointStartsAfreshAndSaysSo) {
  TemporaryFolder folder("resume_missing");
  const auto path = folder.file("typo.ckpt");
  const auto log = train(downhill::Options().checkpoint(path).resume(true).max_updates(1));
  EXPECT_THAT(log, HasSubstr("info no checkpoint '" + path + "' to resume yet: starting afresh"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("resumed from")));
}

TEST(ResumeMessages, ResumeRequiredMakesAMissingCheckpointAnError) {
  TemporaryFolder folder("resume_required");
  const auto path = folder.file("run.ckpt");
  const auto message = message_of<std::invalid_argument>(
      [&] { train(downhill::Options().checkpoint(path).resume_required(true).max_updates(1)); });
  EXPECT_THAT(message, HasSubstr("resume_required(true): there is no checkpoint '" + path +
                                 "' to resume (is the path right?)"));
  // Once it exists, resume_required resumes it, as resume(true) does.
  train(downhill::Options().checkpoint(path).max_updates(1));
  const auto log = train(downhill::Options().checkpoint(path).resume_required(true).max_updates(2));
  EXPECT_THAT(log, HasSubstr("resumed from '" + path + "': 1 passes and 2 updates done"));
  // And it needs a checkpoint path.
  EXPECT_THROW(downhill::Options().resume_required(true).validate(), std::invalid_argument);
}

// ---- a re-run of a run that had stopped ----

// What one run did: its log, the loss's calls in each phase, its summary and the final w.
struct Outcome {
  std::string log;
  int training_calls = 0;
  int validation_calls = 0;
  downhill::RunSummary summary;
  torch::Tensor w;
};

// train()'s problem (2 batches a pass, validated before every pass), counting the loss's calls.
Outcome run(downhill::Options options) {
  Outcome out;
  auto w = torch::zeros({2}, torch::dtype(torch::kDouble).requires_grad(true));
  const auto x = torch::linspace(-1, 1, 16, torch::kDouble).reshape({8, 2});
  const auto y = x.matmul(torch::tensor({0.5, -1.0}, torch::kDouble));
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    ++(downhill::current_phase() == downhill::Phase::kTraining ? out.training_calls
                                                               : out.validation_calls);
    return (batch[0].matmul(w) - batch[1]).square().mean();
  };
  downhill::Dataset data({x, y}, downhill::DatasetOptions().batch_size(4).shuffle(false));
  LogCapture capture;
  auto opt = downhill::build("sgd", loss, {{"w", w}}, options.learning_rate(0.1).validate_every(1));
  opt->minimize(data);
  out.log = capture.text();
  out.summary = opt->last_run();
  out.w = w.detach().clone();
  return out;
}

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void expect_same_summary(const downhill::RunSummary& actual, const downhill::RunSummary& expected) {
  EXPECT_EQ(actual.stop, expected.stop);
  EXPECT_EQ(actual.passes, expected.passes);
  EXPECT_EQ(actual.updates, expected.updates);
  EXPECT_EQ(actual.validations, expected.validations);
  EXPECT_EQ(actual.best_validation, expected.best_validation);
  EXPECT_EQ(actual.best_pass, expected.best_pass);
  EXPECT_EQ(actual.best.to_string(), expected.best.to_string());
}

TEST(ResumeMessages, ReRunningARunThatStoppedOnPatienceDoesNothingAndSaysSo) {
  TemporaryFolder folder("rerun_patience");
  const auto checkpoint = folder.file("run.ckpt");
  const auto history = folder.file("history.jsonl");
  // min_improvement 1 asks the loss to fall by all of itself, which a loss >= 0 cannot: the
  // first validation (before pass 1) is the best, and with patience 0 the second (before pass
  // 2) stops the run. 1 pass of 2 batches, 2 validations of 2 batches each.
  const auto options = [&] {
    return downhill::Options()
        .patience(0)
        .min_improvement(1.0)
        .checkpoint(checkpoint)
        .history(history);
  };
  const Outcome first = run(options());
  ASSERT_EQ(first.summary.stop, downhill::StopReason::kPatience);
  ASSERT_EQ(first.summary.passes, 1);
  ASSERT_EQ(first.summary.validations, 2);
  ASSERT_EQ(first.summary.best_validation, 1);
  ASSERT_EQ(first.training_calls, 2);
  ASSERT_EQ(first.validation_calls, 4);
  const std::string saved_checkpoint = bytes_of(checkpoint);
  const std::string saved_history = bytes_of(history);

  const Outcome again = run(options().resume(true));
  EXPECT_EQ(again.training_calls, 0);
  EXPECT_EQ(again.validation_calls, 0);
  EXPECT_THAT(again.log,
              HasSubstr("the checkpoint's run had already stopped (patience); nothing to do: no "
                        "pass is trained, and the checkpoint and history are left as they are "
                        "(raise patience to train on)"));
  expect_same_summary(again.summary, first.summary);
  // The best is the first validation's: w as it began, 0.
  EXPECT_TRUE(torch::equal(again.w, torch::zeros({2}, torch::kDouble)));
  EXPECT_TRUE(torch::equal(again.w, first.w));
  EXPECT_EQ(bytes_of(checkpoint), saved_checkpoint);
  EXPECT_EQ(bytes_of(history), saved_history);

  // With more patience, the run goes on as a run with patience 2 from the start: validation 2
  // (before pass 2, the one that had stopped the run, not run again) is within it, so pass 2
  // trains; validation 3 (before pass 3) too, so pass 3 trains; validation 4 is 3 after the
  // best and stops it. 2 passes of 2 batches, 2 validations of 2 batches.
  const Outcome longer = run(options().patience(2).resume(true));
  EXPECT_THAT(longer.log, ::testing::Not(HasSubstr("already stopped")));
  EXPECT_EQ(longer.summary.stop, downhill::StopReason::kPatience);
  EXPECT_EQ(longer.training_calls, 4);
  EXPECT_EQ(longer.validation_calls, 4);
  EXPECT_EQ(longer.summary.passes, 3);
  EXPECT_EQ(longer.summary.validations, 4);
  const Outcome straight = run(options().patience(2).checkpoint(folder.file("straight.ckpt")));
  expect_same_summary(longer.summary, straight.summary);
  EXPECT_TRUE(torch::equal(longer.w, straight.w));
}

TEST(ResumeMessages, ReRunningARunThatReachedMaxPassesEndsAsItEndedAndWritesNothing) {
  TemporaryFolder folder("rerun_limit");
  const auto checkpoint = folder.file("run.ckpt");
  const auto history = folder.file("history.jsonl");
  const auto options = [&] {
    return downhill::Options().patience(100).max_passes(2).checkpoint(checkpoint).history(history);
  };
  // Validations before passes 1 and 2, and the closing one after pass 2: 3 of 2 batches each.
  const Outcome first = run(options());
  ASSERT_EQ(first.summary.stop, downhill::StopReason::kMaxPasses);
  ASSERT_EQ(first.summary.validations, 3);
  ASSERT_EQ(first.training_calls, 4);
  ASSERT_EQ(first.validation_calls, 6);
  const std::string saved_checkpoint = bytes_of(checkpoint);
  const std::string saved_history = bytes_of(history);

  const Outcome again = run(options().resume(true));
  EXPECT_EQ(again.training_calls, 0);
  EXPECT_EQ(again.validation_calls, 0);
  EXPECT_THAT(again.log, HasSubstr("already stopped (max_passes); nothing to do"));
  EXPECT_THAT(again.log, HasSubstr("(raise max_passes to train on)"));
  // The closing validation saved beside the checkpoint ends the re-run as the run ended: the
  // same best, the same parameters.
  expect_same_summary(again.summary, first.summary);
  EXPECT_TRUE(torch::equal(again.w, first.w));
  EXPECT_EQ(bytes_of(checkpoint), saved_checkpoint);
  EXPECT_EQ(bytes_of(history), saved_history);

  // A higher limit continues the run from its last step: one more pass, validated before it
  // and at its close, as the run that stopped had never closed.
  const Outcome longer = run(options().max_passes(3).resume(true));
  EXPECT_EQ(longer.training_calls, 2);
  EXPECT_EQ(longer.validation_calls, 4);
  EXPECT_EQ(longer.summary.passes, 3);
  EXPECT_EQ(longer.summary.validations, 4);
}

}  // namespace
