// Early stopping on any validation monitor, in either direction (Options::monitor and
// monitor_mode): the best parameters, patience and reduce-on-plateau follow the monitor.
//
// The problem: x starts at 0, loss (x − 2)², plain SGD at lr 0.25 and one batch per pass, so
// each pass moves x halfway to 2: x = 0, 1, 1.5, 1.75, ... The loss falls at every pass; the
// monitor acc = 10 − (x − 1)² peaks at x = 1 (after pass 1): 9, 10, 9.75, 9.4375, ...
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "test_support.h"

namespace {

using downhill::testing::message_of;
using downhill::testing::ScopedLogLevel;
using ::testing::HasSubstr;

struct Run {
  double x = 0.0;
  double learning_rate = 0.0;
  downhill::RunSummary summary;
};

Run run(const downhill::Options& options) {
  const ScopedLogLevel quiet(spdlog::level::err);
  auto x = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    return {(x - 2).square().sum(), {{"acc", 10 - (x - 1).square().sum()}}};
  };
  auto opt = downhill::build("sgd", loss, {{"x", x}},
                             downhill::Options(options).learning_rate(0.25).validate_every(1));
  downhill::Dataset data(std::vector<torch::Tensor>{torch::zeros({1})},
                         downhill::DatasetOptions().batch_size(1));
  opt->minimize(data);
  return {x.item<double>(), opt->options().learning_rate(), opt->last_run()};
}

TEST(MonitorStopping, HigherIsBetterStopsAndRestoresAtTheMonitorsBest) {
  // Validations 1..4 see acc = 9, 10, 9.75, 9.4375: the 2nd is the best, and with patience 1
  // the 4th (two without improvement) stops the run, which restores x = 1.
  const auto r = run(downhill::Options().monitor("acc").monitor_mode("max").patience(1));
  EXPECT_EQ(r.summary.stop, downhill::StopReason::kPatience);
  EXPECT_EQ(r.summary.best_validation, 2);
  EXPECT_EQ(r.summary.best_pass, 1);
  EXPECT_EQ(r.summary.validations, 4);
  EXPECT_EQ(r.x, 1.0);
  EXPECT_EQ(r.summary.best.at("acc"), 10.0);
  // Watching the loss (lower is better), the same run keeps improving until max_updates.
  const auto by_loss = run(downhill::Options().patience(1).max_updates(6));
  EXPECT_EQ(by_loss.summary.stop, downhill::StopReason::kMaxUpdates);
  EXPECT_EQ(by_loss.x, 2 - 2 * std::pow(0.5, 6));
}

TEST(MonitorStopping, LowerIsBetterOnAnotherMonitor) {
  // acc read as lower-is-better: 9 is its best (the first validation), so patience 1 stops at
  // the 3rd validation and restores x = 0.
  const auto r = run(downhill::Options().monitor("acc").monitor_mode("min").patience(1));
  EXPECT_EQ(r.summary.stop, downhill::StopReason::kPatience);
  EXPECT_EQ(r.summary.best_validation, 1);
  EXPECT_EQ(r.summary.validations, 3);
  EXPECT_EQ(r.x, 0.0);
}

TEST(MonitorStopping, MinImprovementKeepsItsRelativeMeaningInEitherDirection) {
  // From acc 9 to 10 is a gain of 1, less than 0.5·|9|: not an improvement, so the first
  // validation stays the best.
  const auto strict =
      run(downhill::Options().monitor("acc").monitor_mode("max").min_improvement(0.5).patience(1));
  EXPECT_EQ(strict.summary.best_validation, 1);
  EXPECT_EQ(strict.x, 0.0);
  // 1 > 0.1·9: an improvement.
  const auto loose =
      run(downhill::Options().monitor("acc").monitor_mode("max").min_improvement(0.1).patience(1));
  EXPECT_EQ(loose.summary.best_validation, 2);
  EXPECT_EQ(loose.x, 1.0);
}

TEST(MonitorStopping, ReduceOnPlateauFollowsTheMonitor) {
  // acc stops improving after the 2nd validation: the 3rd makes a plateau of 1 and halves the
  // rate. Watching the loss, which improves at every validation, the rate stays.
  const auto options = downhill::Options().plateau_patience(1).plateau_factor(0.5).patience(100);
  const auto by_acc =
      run(downhill::Options(options).monitor("acc").monitor_mode("max").max_updates(3));
  EXPECT_LT(by_acc.learning_rate, 0.25);
  const auto by_loss = run(downhill::Options(options).max_updates(3));
  EXPECT_EQ(by_loss.learning_rate, 0.25);
}

TEST(MonitorStopping, AMonitorTheValidationLacksIsRefusedNamingThoseItHas) {
  const auto message =
      message_of<std::invalid_argument>([] { run(downhill::Options().monitor("accuracy")); });
  EXPECT_THAT(message, HasSubstr("setting monitor = 'accuracy' names no validation monitor; the "
                                 "validation has: loss, acc"));
}

TEST(MonitorStopping, AModeOtherThanMinOrMaxIsRefused) {
  const auto message = message_of<std::invalid_argument>(
      [] { downhill::Options().monitor_mode("maximize").validate(); });
  EXPECT_THAT(message, HasSubstr("monitor_mode"));
  EXPECT_THAT(message, HasSubstr("\"min\" or \"max\""));
  EXPECT_THROW(downhill::Options().monitor("").validate(), std::invalid_argument);
}

}  // namespace
