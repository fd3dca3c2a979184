// full_batch: minimize() wraps the data in one batch, and a run with no validation set
// validates at the point the next update starts from, evaluating it once for both — the same
// parameters and validations as a run that evaluates twice, with the calls counted here.
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using downhill::Options;
using ::testing::HasSubstr;

// A least-squares fit of w to y = 2x over 8 samples by SGD, counting the loss's calls by phase.
struct Fit {
  downhill::RunSummary run(Options options, downhill::DatasetOptions data_options) {
    auto loss = [this](const downhill::Batch& batch) -> downhill::Evaluation {
      ++(downhill::current_phase() == downhill::Phase::kTraining ? training_calls
                                                                 : validation_calls);
      return (batch[0] * w - batch[1]).square().mean();
    };
    const auto x = torch::arange(1, 9, torch::kDouble);
    downhill::Dataset data(downhill::Batch{x, 2 * x}, data_options);
    auto opt = downhill::build("sgd", loss, {{"w", w}}, options.learning_rate(0.01));
    opt->minimize(data);
    return opt->last_run();
  }
  torch::Tensor w = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
  int64_t training_calls = 0;
  int64_t validation_calls = 0;
};

TEST(FullBatch, ValidatesAtTheNextUpdatesStartEvaluatingOnce) {
  const auto options = [] { return Options().max_passes(5).validate_every(1).patience(100); };
  const auto one_batch = downhill::DatasetOptions().batch_size(0);
  Fit twice, once;
  const auto separate = twice.run(options(), one_batch);
  const auto shared = once.run(options().full_batch(true), one_batch);
  // Validations before passes 1..5 and the closing one (6), and 5 updates: 11 evaluations
  // apart; with full_batch the validations before passes 2..5 are the updates' own
  // evaluations: 6, all in the training phase.
  EXPECT_EQ(twice.training_calls, 5);
  EXPECT_EQ(twice.validation_calls, 6);
  EXPECT_EQ(once.training_calls, 6);
  EXPECT_EQ(once.validation_calls, 0);
  EXPECT_EQ(shared.loss_evaluations, 6);
  EXPECT_EQ(shared.gradient_evaluations, 6);
  EXPECT_EQ(separate.loss_evaluations, 11);
  // The same run otherwise: parameters, validations and the best, bit for bit.
  EXPECT_TRUE(torch::equal(once.w, twice.w));
  EXPECT_EQ(shared.validations, separate.validations);
  EXPECT_EQ(shared.best.at("loss"), separate.best.at("loss"));
  EXPECT_EQ(shared.updates, 5);
}

TEST(FullBatch, SaysSoWhenTheDataIsNotOneBatch) {
  downhill::testing::LogCapture capture;
  Fit fit;
  fit.run(Options().max_passes(2).full_batch(true), downhill::DatasetOptions().batch_size(4));
  EXPECT_THAT(
      capture.text(),
      HasSubstr("full_batch is on (set, or L-BFGS's default), but the training data 'data'"));
  EXPECT_GT(fit.validation_calls, 0);  // validated as usual
}

TEST(FullBatch, MinimizeWrapsTheDataInOneBatch) {
  // L-BFGS takes full_batch by default, whatever batch_size says; so does any algorithm
  // given full_batch(true).
  for (const auto& algo : {std::string("lbfgs"), std::string("sgd")}) {
    auto w = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
    std::vector<int64_t> batch_sizes;
    auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
      batch_sizes.push_back(batch[0].size(0));
      return (batch[0] * w - 3).square().mean();
    };
    auto options = Options().algo(algo).max_passes(2).batch_size(2);
    if (algo == "sgd") options.full_batch(true).learning_rate(0.01);
    downhill::minimize(loss, {{"w", w}}, torch::ones({10}, torch::kDouble), options);
    ASSERT_FALSE(batch_sizes.empty()) << algo;
    for (const auto size : batch_sizes) EXPECT_EQ(size, 10) << algo;
  }
}

}  // namespace
