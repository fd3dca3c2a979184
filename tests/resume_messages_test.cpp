// A resume that speaks: where a resumed run stands, a missing checkpoint that starts afresh
// (and says so), and resume_required, for which a missing checkpoint is an error.
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

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

}  // namespace
