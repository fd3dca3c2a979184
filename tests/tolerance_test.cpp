// Tolerances: gradient_tolerance (||g||inf), loss_tolerance (the loss's relative change between
// updates) and step_tolerance (||dp||inf) stop a run right after the update that reaches them,
// naming themselves, where arithmetic written here says; off (0) by default.
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "test_support.h"

namespace {

using downhill::Options;
using downhill::StopReason;
using downhill::testing::LogCapture;
using downhill::testing::message_of;
using ::testing::HasSubstr;

// f(w) = w²/2 from w = 1 by SGD with learning rate 1/2: g_k = w_k, w_{k+1} = w_k − g_k/2, so
// w_k = 2^−k, exactly in float64. No data (an empty batch), `pass` updates a pass, validated
// before the first pass and at the close.
struct Halving {
  downhill::RunSummary run(Options options, int64_t pass = 100) {
    auto loss = [this](const downhill::Batch&) -> downhill::Evaluation {
      return 0.5 * w.square().sum();
    };
    downhill::Dataset data(downhill::Batch{}, downhill::DatasetOptions().iteration_size(pass));
    LogCapture capture;
    auto opt = downhill::build("sgd", loss, {{"w", w}},
                               options.learning_rate(0.5).patience(1000).max_steps(1000));
    opt->minimize(data);
    log = capture.text();
    return opt->last_run();
  }
  double final_w() const { return w.item<double>(); }
  torch::Tensor w = torch::ones({1}, torch::dtype(torch::kDouble).requires_grad(true));
  std::string log;
};

// The updates after which each tolerance stops, by the formulas above.
int64_t updates_to_gradient(double tolerance) {
  double w = 1.0;
  for (int64_t n = 1;; ++n) {
    const double g = w;
    w -= 0.5 * g;
    if (std::abs(g) <= tolerance) return n;
  }
}

int64_t updates_to_step(double tolerance) {
  double w = 1.0;
  for (int64_t n = 1;; ++n) {
    const double step = 0.5 * w;
    w -= step;
    if (step <= tolerance) return n;
  }
}

int64_t updates_to_loss(double tolerance) {
  // Update n reports the loss before it, f(w_{n−1}); from the second on, compared with the
  // previous update's.
  double w = 1.0, previous = 0.5 * w * w;
  for (int64_t n = 2;; ++n) {
    w *= 0.5;
    const double loss = 0.5 * w * w;
    if (std::abs(previous - loss) / std::max({previous, loss, 1.0}) <= tolerance) return n;
    previous = loss;
  }
}

TEST(Tolerance, GradientToleranceStopsAfterTheUpdateWhoseGradientIsWithinIt) {
  Halving problem;
  const auto summary = problem.run(Options().gradient_tolerance(0.01));
  const int64_t expected = updates_to_gradient(0.01);
  ASSERT_EQ(expected, 8);  // 2^−7 = 0.0078 is the first gradient within 0.01
  EXPECT_EQ(summary.stop, StopReason::kGradientTolerance);
  EXPECT_EQ(summary.updates, expected);
  EXPECT_EQ(summary.passes, 0);  // inside the first pass of 100 updates
  // The closing validation found the last point the best: w = 2^−8.
  EXPECT_EQ(problem.final_w(), std::ldexp(1.0, -static_cast<int>(expected)));
  EXPECT_THAT(problem.log, HasSubstr("stopped (gradient_tolerance) after 0 passes and 8 updates"));
  // What it took: 8 steps, each a loss and a gradient, and 2 validations (before pass 1 and
  // the closing one) of a pass of 100 empty batches, each a loss; the last update's gradient
  // was w_7 = 2^−7.
  EXPECT_EQ(summary.loss_evaluations, 8 + 2 * 100);
  EXPECT_EQ(summary.gradient_evaluations, 8);
  EXPECT_EQ(summary.gradient_norm, std::ldexp(1.0, -7));
}

TEST(Tolerance, BeforeAnyUpdateTheGradientNormIsNaN) {
  auto w = torch::ones({1}, torch::requires_grad());
  auto opt = downhill::build("sgd", {{"w", w}}, Options());
  EXPECT_TRUE(std::isnan(opt->last_run().gradient_norm));
  EXPECT_EQ(opt->last_run().gradient_evaluations, 0);
  // apply() computes no gradient itself; its update's gradient norm is that of the one given:
  // sqrt(3² + 4²) = 5.
  auto v = torch::ones({2}, torch::requires_grad());
  auto two = downhill::build("sgd", {{"w", w}, {"v", v}}, Options());
  ASSERT_TRUE(two->apply({torch::tensor({3.0f}), torch::tensor({0.0f, -4.0f})}));
  EXPECT_EQ(two->last_run().gradient_norm, 5.0);
  EXPECT_EQ(two->last_run().gradient_evaluations, 0);
}

TEST(Tolerance, StepToleranceStopsAfterTheUpdateThatMovedNoElementFurther) {
  Halving problem;
  const auto summary = problem.run(Options().step_tolerance(0.01));
  const int64_t expected = updates_to_step(0.01);
  ASSERT_EQ(expected, 7);  // the 7th update moves w by 2^−7
  EXPECT_EQ(summary.stop, StopReason::kStepTolerance);
  EXPECT_EQ(summary.updates, expected);
  EXPECT_EQ(problem.final_w(), std::ldexp(1.0, -static_cast<int>(expected)));
  EXPECT_THAT(problem.log, HasSubstr("stopped (step_tolerance)"));
}

TEST(Tolerance, LossToleranceStopsWhenTheLossChangedByAtMostItRelative) {
  Halving problem;
  const auto summary = problem.run(Options().loss_tolerance(1e-3));
  const int64_t expected = updates_to_loss(1e-3);
  EXPECT_EQ(summary.stop, StopReason::kLossTolerance);
  EXPECT_EQ(summary.updates, expected);
  EXPECT_EQ(problem.final_w(), std::ldexp(1.0, -static_cast<int>(expected)));
  EXPECT_THAT(problem.log, HasSubstr("stopped (loss_tolerance)"));
}

TEST(Tolerance, ReachedAtAPassesLastUpdateThePassEndsFirst) {
  Halving problem;
  const auto summary = problem.run(Options().gradient_tolerance(0.01), /*pass=*/8);
  EXPECT_EQ(summary.stop, StopReason::kGradientTolerance);
  EXPECT_EQ(summary.updates, 8);
  EXPECT_EQ(summary.passes, 1);
}

TEST(Tolerance, OffByDefault) {
  Halving problem;
  const auto summary = problem.run(Options());
  // Every tolerance off: the run goes on to run()'s max_steps(1000).
  EXPECT_EQ(summary.stop, StopReason::kMaxSteps);
  EXPECT_EQ(summary.updates, 1000);
}

TEST(Tolerance, NegativeTolerancesAreRefusedNamingTheSetting) {
  for (const auto* setting : {"gradient_tolerance", "loss_tolerance", "step_tolerance"}) {
    SCOPED_TRACE(setting);
    EXPECT_THAT(message_of<std::invalid_argument>([&] { Options().set(setting, -1.0).validate(); }),
                HasSubstr(std::string(setting) + " = -1"));
  }
  EXPECT_EQ(downhill::to_string(StopReason::kGradientTolerance), "gradient_tolerance");
  EXPECT_EQ(downhill::to_string(StopReason::kLossTolerance), "loss_tolerance");
  EXPECT_EQ(downhill::to_string(StopReason::kStepTolerance), "step_tolerance");
}

}  // namespace
