// Bad input is refused with a clear error that names the culprit and what is
// allowed, and leaves everything as it was (issue 5).
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using downhill::testing::LogCapture;
using downhill::testing::message_of;

using ::testing::AllOf;
using ::testing::HasSubstr;

class BadInput : public ::testing::Test {
 protected:
  downhill::testing::ScopedLogLevel quiet_{spdlog::level::off};
};

downhill::Loss squared_norm(torch::Tensor x) {
  return [x](const downhill::Batch&) -> downhill::Evaluation { return (x * x).sum(); };
}

// --- Settings, refused at build time ---

struct BadSetting {
  const char* setting;
  const char* value;    // as the message prints it
  const char* allowed;  // a fragment of the allowed range
  std::function<downhill::Options()> make;
};

TEST_F(BadInput, EveryInvalidSettingIsRefusedAtBuildNamingSettingValueAndRange) {
  using downhill::Options;
  const std::vector<BadSetting> cases = {
      {"max_nonfinite", "0", ">= 1", [] { return Options().max_nonfinite(0); }},
      {"max_nonfinite", "-3", ">= 1", [] { return Options().max_nonfinite(-3); }},
      {"checkpoint_every", "0", ">= 1", [] { return Options().checkpoint_every(0); }},
      {"checkpoint_every", "-1", ">= 1", [] { return Options().checkpoint_every(-1); }},
      {"resume", "true", "checkpoint(path)", [] { return Options().resume(true); }},
      {"max_updates", "0", ">= 1", [] { return Options().max_updates(0); }},
      {"train_batches", "0", ">= 1", [] { return Options().train_batches(0); }},
      {"valid_batches", "-2", ">= 1", [] { return Options().valid_batches(-2); }},
      {"patience", "-1", ">= 0", [] { return Options().patience(-1); }},
      {"validate_every", "0", ">= 1", [] { return Options().validate_every(0); }},
      {"min_improvement", "-0.5", ">= 0", [] { return Options().min_improvement(-0.5); }},
      // One of the algorithm settings; options_test.cpp covers the rest of docs/guide.md's
      // mathematics.
      {"learning_rate", "0", "> 0", [] { return Options().learning_rate(0); }},
  };
  for (const auto& bad : cases) {
    SCOPED_TRACE(std::string(bad.setting) + " = " + bad.value);
    auto x = torch::ones({2}, torch::requires_grad());
    const auto before = x.detach().clone();
    const auto message = message_of<std::invalid_argument>([&] {
      downhill::build("sgd", squared_norm(x), {{"x", x}}, bad.make());
    });
    EXPECT_THAT(message, AllOf(HasSubstr(bad.setting), HasSubstr(bad.value), HasSubstr("allowed"),
                               HasSubstr(bad.allowed)));
    // The apply()-only form validates the same settings.
    EXPECT_THROW(downhill::build("sgd", {{"x", x}}, bad.make()), std::invalid_argument);
    // minimize() refuses before touching anything.
    EXPECT_THROW(downhill::minimize(squared_norm(x), {{"x", x}}, downhill::Batch{}, bad.make()),
                 std::invalid_argument);
    EXPECT_TRUE(torch::equal(x.detach(), before));
  }
}

TEST_F(BadInput, ValidReliabilitySettingsAreAccepted) {
  auto x = torch::ones({2}, torch::requires_grad());
  EXPECT_NO_THROW(downhill::build(
      "sgd", squared_norm(x), {{"x", x}},
      downhill::Options().max_nonfinite(1).checkpoint_every(1).checkpoint("ok.ckpt").resume(true)));
}

TEST_F(BadInput, UnknownAlgorithmListsTheKnownOnes) {
  auto x = torch::ones({2}, torch::requires_grad());
  const auto message = message_of<std::invalid_argument>([&] {
    downhill::build("adamax", squared_norm(x), {{"x", x}});
  });
  EXPECT_THAT(message, AllOf(HasSubstr("adamax"), HasSubstr("sgd"), HasSubstr("rmsprop"),
                             HasSubstr("esgd"), HasSubstr("adam")));
}

TEST_F(BadInput, UnknownHvMethodListsTheKnownOnes) {
  const auto message =
      message_of<std::invalid_argument>([] { downhill::Options().hv_method("fwd"); });
  EXPECT_THAT(message, AllOf(HasSubstr("hv_method"), HasSubstr("fwd"), HasSubstr("rop"),
                             HasSubstr("lop"), HasSubstr("grad")));
}

// --- The loss and its monitors ---

TEST_F(BadInput, LossThatIsNotAScalarIsRefusedWithItsShape) {
  auto x = torch::ones({3}, torch::requires_grad());
  auto opt = downhill::build(
      "sgd", [&](const downhill::Batch&) -> downhill::Evaluation { return x * 2; }, {{"x", x}});
  const auto message = message_of<std::invalid_argument>([&] { opt->step({}); });
  EXPECT_THAT(message, AllOf(HasSubstr("loss"), HasSubstr("scalar"), HasSubstr("[3]")));
  EXPECT_TRUE(torch::equal(x.detach(), torch::ones({3})));
  EXPECT_EQ(opt->update_count(), 0);

  // Through the loop the first validation meets it, with the same explanation.
  auto y = torch::ones({3}, torch::requires_grad());
  const auto through_loop = message_of<std::invalid_argument>([&] {
    downhill::minimize([&](const downhill::Batch&) -> downhill::Evaluation { return y * 2; },
                       {{"y", y}}, downhill::Batch{}, downhill::Options().max_updates(2));
  });
  EXPECT_THAT(through_loop, AllOf(HasSubstr("loss"), HasSubstr("scalar"), HasSubstr("[3]")));
  EXPECT_TRUE(torch::equal(y.detach(), torch::ones({3})));
}

TEST_F(BadInput, LossThatIsNotFloatingPointIsRefusedWithItsDtype) {
  auto x = torch::ones({3}, torch::requires_grad());
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    return (x > 0).sum();  // an integer count
  };
  auto opt = downhill::build("sgd", loss, {{"x", x}});
  const auto message = message_of<std::invalid_argument>([&] { opt->step({}); });
  EXPECT_THAT(message, AllOf(HasSubstr("loss"), HasSubstr("floating-point"), HasSubstr("Long")));

  const auto through_loop = message_of<std::invalid_argument>([&] {
    downhill::minimize(loss, {{"x", x}}, downhill::Batch{}, downhill::Options().max_updates(2));
  });
  EXPECT_THAT(through_loop,
              AllOf(HasSubstr("loss"), HasSubstr("floating-point"), HasSubstr("Long")));
  EXPECT_TRUE(torch::equal(x.detach(), torch::ones({3})));
}

TEST_F(BadInput, LossThatDependsOnNoParameterIsRefused) {
  auto x = torch::ones({3}, torch::requires_grad());
  auto constant = downhill::build(
      "sgd", [](const downhill::Batch&) -> downhill::Evaluation { return torch::tensor(1.0); },
      {{"x", x}});
  EXPECT_THAT(message_of<std::invalid_argument>([&] { constant->step({}); }),
              AllOf(HasSubstr("loss"), HasSubstr("does not depend on any parameter")));

  // A loss that requires grad through some other tensor, but reaches none of the parameters.
  auto other = torch::ones({3}, torch::requires_grad());
  auto elsewhere = downhill::build(
      "adam", [&](const downhill::Batch&) -> downhill::Evaluation { return (other * 2).sum(); },
      {{"x", x}}, downhill::Options().momentum(0.5));
  const auto message = message_of<std::invalid_argument>([&] { elsewhere->step({}); });
  EXPECT_THAT(message, AllOf(HasSubstr("loss"), HasSubstr("does not depend on any parameter"),
                             HasSubstr("'x'")));
  EXPECT_EQ(elsewhere->update_count(), 0);
  EXPECT_TRUE(torch::equal(x.detach(), torch::ones({3})));
}

TEST_F(BadInput, MonitorThatIsNotAScalarIsRefusedByName) {
  auto x = torch::ones({3}, torch::requires_grad());
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    return {(x * x).sum(), {{"fine", x.sum()}, {"per_element", x.abs()}}};
  };
  auto opt = downhill::build("sgd", loss, {{"x", x}});
  EXPECT_THAT(message_of<std::invalid_argument>([&] { opt->step({}); }),
              AllOf(HasSubstr("monitor 'per_element'"), HasSubstr("scalar"), HasSubstr("[3]")));
  EXPECT_THAT(
      message_of<std::invalid_argument>([&] {
        downhill::minimize(loss, {{"x", x}}, downhill::Batch{}, downhill::Options().max_updates(2));
      }),
      AllOf(HasSubstr("monitor 'per_element'"), HasSubstr("scalar")));
  EXPECT_TRUE(torch::equal(x.detach(), torch::ones({3})));
}

TEST_F(BadInput, LossThatThrowsReachesTheCallerWithTheBatchAndParametersAsBeforeIt) {
  torch::manual_seed(3);
  auto w = torch::randn({4}, torch::requires_grad());
  const auto initial = w.detach().clone();
  const auto data = torch::randn({5, 4});  // five batches of one row, no shuffle
  int training_calls = 0;
  torch::Tensor before_failing_batch;
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    // Validation runs without grad mode; count only training steps.
    if (torch::GradMode::is_enabled() && ++training_calls == 3) {
      before_failing_batch = w.detach().clone();
      throw std::runtime_error("sensor 7 unplugged");
    }
    return (w - batch[0]).square().sum();
  };
  downhill::Dataset train({data}, downhill::DatasetOptions().batch_size(1).shuffle(false));
  auto opt = downhill::build("sgd", loss, {{"w", w}},
                             downhill::Options().learning_rate(0.1).momentum(0.5));
  const auto message = message_of<std::runtime_error>([&] { opt->minimize(train); });
  EXPECT_THAT(message,
              AllOf(HasSubstr("sensor 7 unplugged"), HasSubstr("batch 3"), HasSubstr("pass 1")));
  ASSERT_TRUE(before_failing_batch.defined());
  EXPECT_TRUE(torch::equal(w.detach(), before_failing_batch));
  EXPECT_EQ(opt->update_count(), 2);

  // Independently: two momentum-SGD steps on rows 0 and 1 from the initial values.
  auto expected = initial.clone();
  auto velocity = torch::zeros({4});
  for (int row = 0; row < 2; ++row) {
    const auto grad = 2 * (expected - data[row]);
    velocity = 0.5 * velocity - 0.1 * grad;
    expected = expected + velocity;
  }
  EXPECT_TRUE(torch::allclose(w.detach(), expected, 1e-6, 1e-7));
}

TEST_F(BadInput, LossThrowingInvalidArgumentKeepsItsType) {
  auto w = torch::ones({2}, torch::requires_grad());
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    if (torch::GradMode::is_enabled()) throw std::invalid_argument("labels out of range");
    return (w * w).sum();
  };
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                downhill::minimize(loss, {{"w", w}}, downhill::Batch{},
                                   downhill::Options().algo("sgd").max_updates(3));
              }),
              AllOf(HasSubstr("labels out of range"), HasSubstr("batch 1")));
  EXPECT_TRUE(torch::equal(w.detach(), torch::ones({2})));
}

// --- Datasets ---

TEST_F(BadInput, DatasetOfDifferentLengthsListsEveryShape) {
  const auto message = message_of<std::invalid_argument>([] {
    downhill::Dataset({torch::zeros({10, 3}), torch::zeros({10}), torch::zeros({9, 2})});
  });
  EXPECT_THAT(message, AllOf(HasSubstr("length"), HasSubstr("axis 0"), HasSubstr("[10, 3]"),
                             HasSubstr("[10]"), HasSubstr("[9, 2]")));
  // Along another axis.
  EXPECT_THAT(message_of<std::invalid_argument>([] {
                downhill::Dataset({torch::zeros({2, 5}), torch::zeros({2, 4})},
                                  downhill::DatasetOptions().axis(1));
              }),
              AllOf(HasSubstr("axis 1"), HasSubstr("[2, 5]"), HasSubstr("[2, 4]")));
}

TEST_F(BadInput, DatasetAxisOutOfRangeNamesTheAllowedRange) {
  const auto message = message_of<std::invalid_argument>([] {
    downhill::Dataset({torch::zeros({4, 3})}, downhill::DatasetOptions().axis(2));
  });
  EXPECT_THAT(message, AllOf(HasSubstr("axis 2"), HasSubstr("[4, 3]"), HasSubstr("-2 to 1")));
  EXPECT_THAT(message_of<std::invalid_argument>([] {
                downhill::Dataset({torch::zeros({4, 3})}, downhill::DatasetOptions().axis(-3));
              }),
              AllOf(HasSubstr("axis -3"), HasSubstr("-2 to 1")));
  // A 0-dim tensor has no axis to split along at all.
  EXPECT_THAT(
      message_of<std::invalid_argument>([] { downhill::Dataset({torch::tensor(1.0)}); }),
      AllOf(HasSubstr("tensor 0"), HasSubstr("0-dim"), HasSubstr("at least one dimension")));
}

TEST_F(BadInput, DatasetWithAnEmptyTensorIsRefused) {
  EXPECT_THAT(message_of<std::invalid_argument>([] {
                downhill::Dataset({torch::zeros({4, 2}), torch::zeros({0, 2})});
              }),
              AllOf(HasSubstr("tensor 1"), HasSubstr("[0, 2]"), HasSubstr("empty")));
}

TEST_F(BadInput, DatasetIterationSizeBelowOneIsRefused) {
  EXPECT_THAT(message_of<std::invalid_argument>([] {
                downhill::Dataset({torch::zeros({4})},
                                  downhill::DatasetOptions().iteration_size(0));
              }),
              AllOf(HasSubstr("iteration_size"), HasSubstr(">= 1")));
}

TEST_F(BadInput, GeneratorReturningAnEmptyBatchIsRefused) {
  downhill::Dataset data([] { return downhill::Batch{}; });
  EXPECT_THAT(message_of<std::invalid_argument>([&] { data.next(); }),
              AllOf(HasSubstr("generator"), HasSubstr("empty batch"), HasSubstr("at least one")));

  auto w = torch::ones({2}, torch::requires_grad());
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                downhill::minimize(
                    squared_norm(w), {{"w", w}}, [] { return downhill::Batch{}; },
                    downhill::Options().max_updates(1));
              }),
              HasSubstr("empty batch"));
  EXPECT_TRUE(torch::equal(w.detach(), torch::ones({2})));
}

TEST_F(BadInput, GeneratorChangingItsNumberOfTensorsIsRefused) {
  int calls = 0;
  downhill::Dataset data([&] {
    return ++calls < 3 ? downhill::Batch{torch::zeros({2}), torch::zeros({2})}
                       : downhill::Batch{torch::zeros({2})};
  });
  EXPECT_NO_THROW(data.next());
  EXPECT_NO_THROW(data.next());
  EXPECT_THAT(message_of<std::invalid_argument>([&] { data.next(); }),
              AllOf(HasSubstr("returned 1 tensors"), HasSubstr("first batch had 2")));
}

// --- Parameters ---

TEST_F(BadInput, NoParametersIsRefused) {
  EXPECT_THAT(message_of<std::invalid_argument>([] {
                downhill::build("sgd", squared_norm(torch::ones({1})), downhill::Params{});
              }),
              AllOf(HasSubstr("no parameters"), HasSubstr("at least one")));
  EXPECT_THROW(downhill::build("adam", downhill::Params{}), std::invalid_argument);
}

TEST_F(BadInput, TheSameTensorTwiceIsRefused) {
  auto x = torch::ones({2}, torch::requires_grad());
  auto alias = x;  // another handle to the same tensor
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                downhill::build("sgd", squared_norm(x), {{"a", x}, {"b", alias}});
              }),
              AllOf(HasSubstr("'b'"), HasSubstr("same tensor"), HasSubstr("once")));
  // Two tensors under one name.
  auto y = torch::ones({2}, torch::requires_grad());
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                downhill::build("sgd", squared_norm(x), {{"a", x}, {"a", y}});
              }),
              AllOf(HasSubstr("'a'"), HasSubstr("unique")));
}

TEST_F(BadInput, ParameterThatIsNotFloatingPointIsRefusedWithItsDtype) {
  auto counts = torch::zeros({2}, torch::kLong);
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                downhill::build("rmsprop", {{"counts", counts}});
              }),
              AllOf(HasSubstr("parameter 'counts' has dtype Long"),
                    HasSubstr("allowed: Float (float32) or Double (float64)")));
}

TEST_F(BadInput, ParameterNotRequiringGradIsRefusedWhenTheLossNeedsGradients) {
  auto frozen = torch::ones({2});
  // Refused at the first step that asks autograd for its gradient, changing nothing: a loss
  // may return its own gradients (Evaluation::with_gradients), and apply() takes the
  // caller's, so neither needs it.
  auto opt = downhill::build("sgd", squared_norm(frozen), {{"frozen", frozen}});
  EXPECT_THAT(message_of<std::invalid_argument>([&] { opt->step({}); }),
              AllOf(HasSubstr("'frozen'"), HasSubstr("require"), HasSubstr("requires_grad"),
                    HasSubstr("with_gradients")));
  EXPECT_TRUE(torch::equal(frozen, torch::ones({2})));
  EXPECT_EQ(opt->update_count(), 0);
  EXPECT_NO_THROW(downhill::build("sgd", {{"frozen", frozen}}));
}

TEST_F(BadInput, ParameterTheLossNeverReachesGetsAZeroGradientAndOneWarning) {
  LogCapture log;
  auto used = torch::full({2}, 3.0, torch::requires_grad());
  auto unused = torch::full({2}, 5.0, torch::requires_grad());
  auto opt = downhill::build("sgd", squared_norm(used), {{"used", used}, {"unused", unused}},
                             downhill::Options().learning_rate(0.25));
  for (int i = 0; i < 4; ++i) opt->step({});
  EXPECT_EQ(opt->update_count(), 4);
  // x ← x − 0.25·2x halves `used` each step; a zero gradient leaves `unused` alone.
  EXPECT_TRUE(torch::equal(used.detach(), torch::full({2}, 3.0 / 16)));
  EXPECT_TRUE(torch::equal(unused.detach(), torch::full({2}, 5.0)));
  EXPECT_EQ(log.warnings_with("'unused'"), 1) << log.text();
  EXPECT_EQ(log.warnings_with("does not reach"), 1) << log.text();
}

TEST_F(BadInput, GradientsOfTheWrongShapeAreRefusedByApply) {
  auto x = torch::ones({2, 3});
  auto opt = downhill::build("adam", {{"x", x}});
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                opt->apply({torch::ones({3, 2})});
              }),
              AllOf(HasSubstr("'x'"), HasSubstr("[3, 2]"), HasSubstr("[2, 3]")));
  EXPECT_THAT(message_of<std::invalid_argument>([&] { opt->apply({}); }),
              AllOf(HasSubstr("0 gradients"), HasSubstr("1 parameters")));
  EXPECT_EQ(opt->update_count(), 0);
  EXPECT_TRUE(torch::equal(x, torch::ones({2, 3})));
}

}  // namespace
