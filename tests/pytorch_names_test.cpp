// What a PyTorch user reaches for by name: "adamw" (Adam with torch.optim.AdamW's defaults for
// what the user leaves unset) and "lion" (the rule's arithmetic is in user_rule_test and
// algorithm_math_test), and betas logged as betas.
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "test_support.h"

namespace {

using downhill::testing::LogCapture;
using ::testing::HasSubstr;

downhill::Params one_double(double value) {
  return {{"w", torch::full({1}, value, torch::kDouble)}};
}

TEST(AdamW, TakesPyTorchsDefaultsForWhatIsLeftUnset) {
  auto opt = downhill::build("adamw", one_double(1.0));
  EXPECT_EQ(opt->name(), "AdamW");
  const auto& o = opt->options();
  EXPECT_EQ(o.learning_rate(), 1e-3);
  EXPECT_NEAR(o.beta1(), 0.9, 1e-15);
  EXPECT_NEAR(o.beta2(), 0.999, 1e-15);
  EXPECT_EQ(o.rms_regularizer(), 1e-8);
  EXPECT_EQ(o.weight_decay(), 1e-2);
  // Adam itself keeps downhill's defaults.
  const auto adam_optimizer = downhill::build("adam", one_double(1.0));
  const auto& adam = adam_optimizer->options();
  EXPECT_EQ(adam.learning_rate(), 1e-4);
  EXPECT_EQ(adam.weight_decay(), 0.0);
  EXPECT_EQ(adam.beta1_halflife(), 7.0);
}

TEST(AdamW, WhatTheUserSetsWinsEvenWhenItIsTheTablesDefault) {
  // weight_decay(0) and learning_rate(1e-4) are the table's defaults, set on purpose.
  auto opt =
      downhill::build("adamw", one_double(1.0),
                      downhill::Options().weight_decay(0).learning_rate(1e-4).beta1_halflife(3));
  EXPECT_EQ(opt->options().weight_decay(), 0.0);
  EXPECT_EQ(opt->options().learning_rate(), 1e-4);
  EXPECT_EQ(opt->options().beta1_halflife(), 3.0);
  EXPECT_NEAR(opt->options().beta2(), 0.999, 1e-15);  // still AdamW's
  // By name too.
  auto named =
      downhill::build("adamw", one_double(1.0), downhill::Options().set("weight_decay", 0));
  EXPECT_EQ(named->options().weight_decay(), 0.0);
  EXPECT_FALSE(downhill::Options().is_set("weight_decay"));
  EXPECT_TRUE(downhill::Options().weight_decay(0).is_set("weight_decay"));
}

// torch.optim.AdamW's first step, worked by hand: p = 1, g = 0.5.
// m = 0.1·0.5 = 0.05, v = 0.001·0.25; m̂ = m/(1 − 0.9) = 0.5, v̂ = v/(1 − 0.999) = 0.25;
// p ← p − lr·λ·p − lr·m̂/(√v̂ + ε) = 1 − 1e-3·1e-2 − 1e-3·0.5/(0.5 + 1e-8).
TEST(AdamW, FirstUpdateIsTorchsAdamW) {
  auto params = one_double(1.0);
  auto opt = downhill::build("adamw", params);
  ASSERT_TRUE(opt->apply({torch::full({1}, 0.5, torch::kDouble)}));
  const double expected = 1 - 1e-3 * 1e-2 - 1e-3 * 0.5 / (0.5 + 1e-8);
  EXPECT_NEAR(params.tensor(0).item<double>(), expected, 1e-15);
}

TEST(AdamW, RefusalsNameAdamW) {
  const auto message = downhill::testing::message_of<std::invalid_argument>([] {
    downhill::build("adamw", {{"w", torch::ones({1})}}, downhill::Options().rms_regularizer(0));
  });
  EXPECT_THAT(message, HasSubstr("setting rms_regularizer = 0 is invalid for AdamW;"));
}

TEST(Lion, TakesThePapersBetasWhenLeftUnset) {
  auto opt = downhill::build("lion", one_double(1.0));
  EXPECT_EQ(opt->name(), "Lion");
  EXPECT_NEAR(opt->options().beta1(), 0.9, 1e-15);
  EXPECT_NEAR(opt->options().beta2(), 0.99, 1e-15);
  EXPECT_EQ(opt->options().learning_rate(), 1e-4);
  // First update, m = 0: u = lr·sign(0.1·g) = 1e-4 for g = 3; decay lr·λ·p = 1e-4·0.5·1.
  auto params = one_double(1.0);
  auto decayed = downhill::build("lion", params, downhill::Options().weight_decay(0.5));
  ASSERT_TRUE(decayed->apply({torch::full({1}, 3.0, torch::kDouble)}));
  EXPECT_NEAR(params.tensor(0).item<double>(), 1 - 1e-4 - 1e-4 * 0.5, 1e-16);
}

std::string settings_line(const std::string& algo, const downhill::Options& options) {
  auto x = torch::full({1}, 0.5, torch::dtype(torch::kDouble).requires_grad(true));
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    return (x - 2).square().sum();
  };
  LogCapture capture;
  downhill::minimize(loss, {{"x", x}}, downhill::Batch{}, downhill::Options(options).algo(algo));
  const auto text = capture.text();
  const auto start = text.find(" settings: ");
  return start == std::string::npos ? text : text.substr(start, text.find('\n', start) - start);
}

TEST(SettingsLog, BetasGivenAsBetasAreLoggedAsBetas) {
  const auto line =
      settings_line("adam", downhill::Options().beta1(0.8).beta2(0.95).max_updates(1));
  EXPECT_THAT(line, HasSubstr("beta1 = 0.8, beta2 = 0.95"));
  EXPECT_THAT(line, ::testing::Not(HasSubstr("halflife")));
  // A half-life given as one stays a half-life.
  const auto halflife =
      settings_line("adam", downhill::Options().beta1_halflife(10).max_updates(1));
  EXPECT_THAT(halflife, HasSubstr("beta1_halflife = 10"));
  // AdamW's defaults are logged as a PyTorch user gave them.
  const auto adamw = settings_line("adamw", downhill::Options().max_updates(1));
  EXPECT_THAT(adamw, HasSubstr("learning_rate = 0.001"));
  EXPECT_THAT(adamw, HasSubstr("weight_decay = 0.01"));
  EXPECT_THAT(adamw, HasSubstr("beta1 = 0.9, beta2 = 0.999"));
}

}  // namespace
