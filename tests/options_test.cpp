// Names, registration, validation of settings, refusal of mismatched gradients, and
// parameters of every floating dtype and shape (docs/guide.md's interfaces and mathematics).
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using downhill::testing::message_of;

using testing::HasSubstr;
using testing::Not;

downhill::Params one_param() { return {{"x", torch::zeros({2}, torch::kDouble)}}; }

// The display name of every built-in algorithm, as docs/guide.md writes it.
const std::map<std::string, std::string> kDisplayNames = {
    {"sgd", "SGD"},         {"nag", "NAG"},           {"rprop", "RProp"}, {"rmsprop", "RMSProp"},
    {"adagrad", "ADAGRAD"}, {"adadelta", "ADADELTA"}, {"esgd", "ESGD"},   {"adam", "Adam"},
    {"adamw", "AdamW"},     {"lion", "Lion"},
};

std::string upper_case(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return text;
}

TEST(Names, BuildIsCaseInsensitiveAndNameIsTheDisplayName) {
  for (const auto& algo : downhill::builtin_algorithm_names()) {
    const auto display = kDisplayNames.find(algo);
    ASSERT_NE(display, kDisplayNames.end()) << "no display name listed here for " << algo;
    // Lower case, upper case, and the display name's own mixed case ("RMSProp").
    for (const auto& requested : {algo, upper_case(algo), display->second}) {
      auto opt = downhill::build(requested, one_param());
      EXPECT_EQ(opt->name(), display->second) << "build(\"" << requested << "\")";
    }
  }
  EXPECT_EQ(downhill::build("EsGd", one_param())->name(), "ESGD");
  // No display name is listed for an algorithm that is not built in.
  EXPECT_EQ(kDisplayNames.size(), downhill::builtin_algorithm_names().size());
}

TEST(Names, UnknownNameListsTheKnownOnes) {
  const auto message =
      message_of<std::invalid_argument>([] { downhill::build("adamax", one_param()); });
  EXPECT_THAT(message, HasSubstr("unknown algorithm 'adamax'"));
  for (const auto& name : downhill::builtin_algorithm_names()) {
    EXPECT_THAT(message, HasSubstr(name));
  }
}

TEST(Names, AnUnknownNameCloseToAKnownOneSuggestsIt) {
  // Two letters swapped, one missing, another case: likely typos.
  for (const auto& [typed, meant] : std::vector<std::pair<std::string, std::string>>{
           {"rmsporp", "rmsprop"}, {"adadlta", "adadelta"}, {"ADAMWW", "adamw"}}) {
    const auto message =
        message_of<std::invalid_argument>([&] { downhill::build(typed, one_param()); });
    EXPECT_THAT(message,
                HasSubstr("unknown algorithm '" + typed + "'; did you mean '" + meant + "'?"));
  }
  // Nothing close: no suggestion.
  const auto far =
      message_of<std::invalid_argument>([] { downhill::build("simplex", one_param()); });
  EXPECT_THAT(far, Not(HasSubstr("did you mean")));
}

TEST(Names, AlgorithmNamesListsTheBuiltins) {
  const auto names = downhill::algorithm_names();
  for (const auto& name : downhill::builtin_algorithm_names()) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  }
}

// A user algorithm: u = lr · sign(g), no state.
class SignDescent : public downhill::Optimizer {
 public:
  SignDescent(downhill::Loss loss, downhill::Params params, downhill::Options options)
      : Optimizer("SignDescent", std::move(loss), std::move(params), std::move(options)) {}

 protected:
  torch::Tensor compute_update(size_t, const torch::Tensor& grad, const torch::Tensor&,
                               std::vector<torch::Tensor>&) override {
    return grad.sign() * options().learning_rate();
  }
};

// The registry is process-wide and refuses a name twice, so SignDescent is registered once
// per process, however often the test runs (--gtest_repeat).
void register_sign_descent_once() {
  static const bool registered = [] {
    downhill::register_algorithm("SignDescent", [](downhill::Loss loss, downhill::Params params,
                                                   downhill::Options options) {
      return std::make_unique<SignDescent>(std::move(loss), std::move(params), std::move(options));
    });
    return true;
  }();
  (void)registered;
}

TEST(Registration, BuildFindsARegisteredAlgorithm) {
  register_sign_descent_once();
  auto x = torch::tensor({1.0, -2.0, 0.5}, torch::kDouble);
  // Found in any case, and through the loss-taking overload as well.
  auto opt = downhill::build("signdescent", {{"x", x}}, downhill::Options().learning_rate(0.25));
  EXPECT_EQ(opt->name(), "SignDescent");
  ASSERT_TRUE(opt->apply({torch::tensor({3.0, -0.1, 0.0}, torch::kDouble)}));
  EXPECT_DOUBLE_EQ(x[0].item<double>(), 0.75);
  EXPECT_DOUBLE_EQ(x[1].item<double>(), -1.75);
  EXPECT_DOUBLE_EQ(x[2].item<double>(), 0.5);

  auto y = torch::tensor({1.0}, torch::TensorOptions().dtype(torch::kDouble).requires_grad(true));
  auto with_loss = downhill::build(
      "SIGNDESCENT", [&](const downhill::Batch&) -> downhill::Evaluation { return 3.0 * y.sum(); },
      {{"y", y}}, downhill::Options().learning_rate(0.5));
  with_loss->step({});
  EXPECT_DOUBLE_EQ(y.item<double>(), 0.5);

  const auto names = downhill::algorithm_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "signdescent"), names.end());
  // The name is now taken, in any case.
  EXPECT_THROW(
      downhill::register_algorithm("SIGNDESCENT",
                                   [](downhill::Loss, downhill::Params, downhill::Options)
                                       -> std::unique_ptr<downhill::Optimizer> { return nullptr; }),
      std::invalid_argument);
  // Built-in names cannot be taken either.
  EXPECT_THROW(
      downhill::register_algorithm("Adam",
                                   [](downhill::Loss, downhill::Params, downhill::Options)
                                       -> std::unique_ptr<downhill::Optimizer> { return nullptr; }),
      std::invalid_argument);
}

struct InvalidSetting {
  std::string label;
  downhill::Options options;
  std::string setting;  // the setting the message must name
  std::string value;    // the value as the message prints it
  std::string allowed;  // a piece of the allowed range the message must give
};

const double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<InvalidSetting> invalid_settings() {
  using downhill::Options;
  return {
      {"learning_rate_zero", Options().learning_rate(0), "learning_rate", "0", "> 0"},
      {"learning_rate_negative", Options().learning_rate(-0.5), "learning_rate", "-0.5", "> 0"},
      {"learning_rate_nan", Options().learning_rate(kNaN), "learning_rate", "nan", "> 0"},
      {"momentum_negative", Options().momentum(-0.1), "momentum", "-0.1", "[0, 1)"},
      {"momentum_one", Options().momentum(1.0), "momentum", "1", "[0, 1)"},
      {"momentum_nan", Options().momentum(kNaN), "momentum", "nan", "[0, 1)"},
      {"rms_halflife_zero", Options().rms_halflife(0), "rms_halflife", "0", "> 0"},
      {"rms_halflife_negative", Options().rms_halflife(-3), "rms_halflife", "-3", "> 0"},
      {"rms_halflife_nan", Options().rms_halflife(kNaN), "rms_halflife", "nan", "> 0"},
      {"beta1_halflife_zero", Options().beta1_halflife(0), "beta1_halflife", "0", "> 0"},
      {"beta2_halflife_negative", Options().beta2_halflife(-1), "beta2_halflife", "-1", "> 0"},
      {"beta2_halflife_nan", Options().beta2_halflife(kNaN), "beta2_halflife", "nan", "> 0"},
      {"rms_regularizer_negative", Options().rms_regularizer(-1e-8), "rms_regularizer", "-1e-08",
       ">= 0"},
      {"rms_regularizer_nan", Options().rms_regularizer(kNaN), "rms_regularizer", "nan", ">= 0"},
      {"rprop_increase_below_one", Options().rprop_increase(0.9), "rprop_increase", "0.9", ">= 1"},
      {"rprop_increase_nan", Options().rprop_increase(kNaN), "rprop_increase", "nan", ">= 1"},
      {"rprop_decrease_zero", Options().rprop_decrease(0), "rprop_decrease", "0", "(0, 1]"},
      {"rprop_decrease_above_one", Options().rprop_decrease(1.5), "rprop_decrease", "1.5",
       "(0, 1]"},
      {"rprop_decrease_nan", Options().rprop_decrease(kNaN), "rprop_decrease", "nan", "(0, 1]"},
      {"rprop_max_below_min", Options().rprop_min_step(0.5).rprop_max_step(0.25), "rprop_max_step",
       "0.25", "rprop_min_step"},
      {"rprop_max_step_nan", Options().rprop_max_step(kNaN), "rprop_max_step", "nan",
       "rprop_min_step"},
      {"rprop_min_step_negative", Options().rprop_min_step(-1).rprop_max_step(1), "rprop_min_step",
       "-1", ">= 0"},
      {"max_gradient_norm_negative", Options().max_gradient_norm(-1), "max_gradient_norm", "-1",
       ">= 0"},
      {"max_gradient_norm_nan", Options().max_gradient_norm(kNaN), "max_gradient_norm", "nan",
       ">= 0"},
      {"max_gradient_elem_negative", Options().max_gradient_elem(-0.5), "max_gradient_elem", "-0.5",
       ">= 0"},
      {"max_gradient_elem_nan", Options().max_gradient_elem(kNaN), "max_gradient_elem", "nan",
       ">= 0"},
      {"patience_negative", Options().patience(-1), "patience", "-1", ">= 0"},
      {"validate_every_zero", Options().validate_every(0), "validate_every", "0", ">= 1"},
      {"min_improvement_negative", Options().min_improvement(-0.01), "min_improvement", "-0.01",
       ">= 0"},
      {"min_improvement_nan", Options().min_improvement(kNaN), "min_improvement", "nan", ">= 0"},
      {"weight_decay_negative", Options().weight_decay(-0.01), "weight_decay", "-0.01", ">= 0"},
      {"weight_decay_nan", Options().weight_decay(kNaN), "weight_decay", "nan", ">= 0"},
      {"max_gradient_global_norm_negative", Options().max_gradient_global_norm(-1),
       "max_gradient_global_norm", "-1", ">= 0"},
      {"max_gradient_global_norm_nan", Options().max_gradient_global_norm(kNaN),
       "max_gradient_global_norm", "nan", ">= 0"},
      {"accumulate_zero", Options().accumulate(0), "accumulate", "0", ">= 1"},
      {"plateau_patience_negative", Options().plateau_patience(-1), "plateau_patience", "-1",
       ">= 0"},
      {"plateau_factor_zero", Options().plateau_factor(0), "plateau_factor", "0", "(0, 1)"},
      {"plateau_factor_one", Options().plateau_factor(1), "plateau_factor", "1", "(0, 1)"},
      {"plateau_factor_nan", Options().plateau_factor(kNaN), "plateau_factor", "nan", "(0, 1)"},
      {"plateau_min_learning_rate_negative", Options().plateau_min_learning_rate(-1),
       "plateau_min_learning_rate", "-1", ">= 0"},
      {"plateau_cooldown_negative", Options().plateau_cooldown(-2), "plateau_cooldown", "-2",
       ">= 0"},
  };
}

class Validation : public testing::TestWithParam<InvalidSetting> {};

TEST_P(Validation, BuildRefusesWithSettingValueAndRange) {
  const auto& c = GetParam();
  for (const auto& algo : {std::string("sgd"), std::string("adam")}) {
    const auto message =
        message_of<std::invalid_argument>([&] { downhill::build(algo, one_param(), c.options); });
    EXPECT_THAT(message, HasSubstr(c.setting));
    EXPECT_THAT(message, HasSubstr(c.value));
    EXPECT_THAT(message, HasSubstr(c.allowed));
  }
  // The overload with a loss validates too.
  auto x = torch::zeros({1}, torch::TensorOptions().dtype(torch::kDouble).requires_grad(true));
  EXPECT_THROW(
      downhill::build(
          "rmsprop", [&](const downhill::Batch&) -> downhill::Evaluation { return x.sum(); },
          {{"x", x}}, c.options),
      std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(EverySetting, Validation, testing::ValuesIn(invalid_settings()),
                         [](const testing::TestParamInfo<InvalidSetting>& info) {
                           return info.param.label;
                         });

// The edges of each allowed range are accepted.
TEST(Validation, BoundaryValuesAreAccepted) {
  const std::vector<downhill::Options> accepted = {
      downhill::Options().momentum(0),
      downhill::Options().momentum(0.999),
      downhill::Options().rms_regularizer(0),
      downhill::Options().rprop_increase(1),
      downhill::Options().rprop_decrease(1),
      downhill::Options().rprop_min_step(0.5).rprop_max_step(0.5),
      downhill::Options().max_gradient_norm(0).max_gradient_elem(0),
      downhill::Options().patience(0),
      downhill::Options().validate_every(1),
      downhill::Options().min_improvement(0),
      downhill::Options().learning_rate(1e-12).rms_halflife(1e-3),
  };
  for (size_t i = 0; i < accepted.size(); ++i) {
    EXPECT_NO_THROW(downhill::build("sgd", one_param(), accepted[i])) << "case " << i;
  }
}

// Two parameters; after a refused apply(), both, and the optimizer's state, are as before.
class Refusal : public testing::Test {
 protected:
  void SetUp() override {
    a_ = torch::tensor({1.0, 2.0, 3.0}, torch::kDouble);
    b_ = torch::tensor({{4.0, 5.0}, {6.0, 7.0}}, torch::kDouble);
    opt_ = downhill::build("adam", {{"alpha", a_}, {"beta", b_}},
                           downhill::Options().learning_rate(0.1).momentum(0.5));
  }

  void expect_untouched() {
    EXPECT_TRUE(torch::equal(a_, torch::tensor({1.0, 2.0, 3.0}, torch::kDouble)));
    EXPECT_TRUE(torch::equal(b_, torch::tensor({{4.0, 5.0}, {6.0, 7.0}}, torch::kDouble)));
    EXPECT_EQ(opt_->update_count(), 0);
    for (const auto& [name, tensor] : opt_->state()) {
      EXPECT_TRUE(tensor.eq(0).all().item<bool>()) << "state " << name << " changed";
    }
  }

  torch::Tensor good_a() const { return torch::ones({3}, torch::kDouble); }
  torch::Tensor good_b() const { return torch::ones({2, 2}, torch::kDouble); }

  torch::Tensor a_, b_;
  std::unique_ptr<downhill::Optimizer> opt_;
};

TEST_F(Refusal, TooFewGradients) {
  const auto message = message_of<std::invalid_argument>([&] { opt_->apply({good_a()}); });
  EXPECT_THAT(message, HasSubstr("got 1 gradients for 2 parameters"));
  EXPECT_THAT(message, HasSubstr("give one per parameter, in the order of params()"));
  expect_untouched();
}

TEST_F(Refusal, TooManyGradients) {
  const auto message = message_of<std::invalid_argument>([&] {
    opt_->apply({good_a(), good_b(), good_b()});
  });
  EXPECT_THAT(message, HasSubstr("got 3 gradients for 2 parameters"));
  EXPECT_THAT(message, HasSubstr("give one per parameter, in the order of params()"));
  expect_untouched();
}

TEST_F(Refusal, WrongShapeOfTheSecondParameter) {
  // The first gradient is fine; the second has the right element count but not the shape.
  const auto message = message_of<std::invalid_argument>([&] {
    opt_->apply({good_a(), torch::ones({4}, torch::kDouble)});
  });
  EXPECT_THAT(message, HasSubstr("beta"));
  EXPECT_THAT(message, HasSubstr("[4]"));
  EXPECT_THAT(message, HasSubstr("[2, 2]"));
  expect_untouched();
}

TEST_F(Refusal, WrongShapeOfTheFirstParameter) {
  const auto message = message_of<std::invalid_argument>([&] {
    opt_->apply({torch::ones({3, 1}, torch::kDouble), good_b()});
  });
  EXPECT_THAT(message, HasSubstr("alpha"));
  expect_untouched();
}

TEST_F(Refusal, WrongDtype) {
  const auto message = message_of<std::invalid_argument>([&] {
    opt_->apply({good_a(), good_b().to(torch::kFloat)});
  });
  EXPECT_THAT(message, HasSubstr("beta"));
  EXPECT_THAT(message, HasSubstr("Float"));
  EXPECT_THAT(message, HasSubstr("Double"));
  expect_untouched();
}

TEST_F(Refusal, UndefinedGradient) {
  const auto message = message_of<std::invalid_argument>([&] {
    opt_->apply({good_a(), torch::Tensor()});
  });
  EXPECT_THAT(message, HasSubstr("beta"));
  expect_untouched();
}

TEST_F(Refusal, AcceptedAfterARefusal) {
  EXPECT_THROW(opt_->apply({good_a()}), std::invalid_argument);
  ASSERT_TRUE(opt_->apply({good_a(), good_b()}));
  EXPECT_EQ(opt_->update_count(), 1);
  EXPECT_FALSE(torch::equal(a_, torch::tensor({1.0, 2.0, 3.0}, torch::kDouble)));
}

TEST(RefusalEsgd, MismatchedHessianVectorProductNamesTheParameter) {
  auto a = torch::zeros({2}, torch::kDouble);
  auto b = torch::zeros({3}, torch::kDouble);
  auto opt = downhill::build("esgd", {{"first", a}, {"second", b}});
  const auto ones2 = torch::ones({2}, torch::kDouble), ones3 = torch::ones({3}, torch::kDouble);
  const auto message = message_of<std::invalid_argument>([&] {
    opt->apply({ones2, ones3}, {ones2, torch::ones({3}, torch::kFloat)});
  });
  EXPECT_THAT(message, HasSubstr("second"));
  EXPECT_TRUE(a.eq(0).all().item<bool>());
  EXPECT_TRUE(b.eq(0).all().item<bool>());
  EXPECT_EQ(opt->update_count(), 0);
}

// SGD with learning_rate 0.5 on 0-d and 3-d parameters, float and double: p ← p − 0.5 g.
TEST(Shapes, ScalarAndThreeDimensionalParameters) {
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    for (const bool fused : {true, false}) {
      auto scalar = torch::tensor(2.0, torch::TensorOptions().dtype(dtype));
      auto cube = torch::arange(24, torch::TensorOptions().dtype(dtype)).reshape({2, 3, 4});
      auto opt = downhill::build("sgd", {{"scalar", scalar}, {"cube", cube}},
                                 downhill::Options().learning_rate(0.5).fused(fused));
      ASSERT_TRUE(opt->apply({torch::tensor(3.0, torch::TensorOptions().dtype(dtype)),
                              torch::ones({2, 3, 4}, torch::TensorOptions().dtype(dtype))}));
      EXPECT_EQ(scalar.dim(), 0);
      EXPECT_DOUBLE_EQ(scalar.item<double>(), 0.5);
      ASSERT_EQ(cube.sizes(), (std::vector<int64_t>{2, 3, 4}));
      for (int64_t i = 0; i < 24; ++i) {
        EXPECT_DOUBLE_EQ(cube.flatten()[i].item<double>(), static_cast<double>(i) - 0.5);
      }
    }
  }
}

// The scalar parameter of EveryAlgorithmIsIndependentOfShape after its three steps, worked
// out in double precision from the update rules of docs/guide.md ("The mathematics"), with
// learning_rate 0.05, momentum 0.5, rms_halflife 4 and the other settings at their defaults.
// Its gradients are 0.5, −0.5, −1.5, and so are its Hessian-vector products; clipping is per
// parameter and none of them exceeds the norm 3, so it changes nothing here.
double expected_scalar(const std::string& algo) {
  const double lr = 0.05, mu = 0.5, eps = 1e-8;
  const auto halflife_weight = [](double h) { return std::exp(-std::log(2.0) / h); };
  const double gamma = halflife_weight(4), beta1 = halflife_weight(7), beta2 = halflife_weight(69);
  double p = 0.75, velocity = 0;
  double f = 0, G = 0, X = 0, D = 0, m = 0, v = 0, g_prev = 0, rprop_step = lr;
  for (int t = 1; t <= 3; ++t) {
    double g = 0.5 - (t - 1);
    const double hv = g;
    double u = 0;
    if (algo == "sgd" || algo == "nag") {
      u = lr * g;
    } else if (algo == "rprop") {
      const double s = g * g_prev;
      rprop_step = std::min(100.0, std::max(0.0, rprop_step * (s > 0 ? 1.01 : s < 0 ? 0.99 : 1)));
      if (s < 0) g = 0;
      u = (g > 0 ? 1 : g < 0 ? -1 : 0) * rprop_step;
      g_prev = g;
    } else if (algo == "adagrad") {
      G += g * g;
      u = lr * g / std::sqrt(G + eps);
    } else if (algo == "rmsprop") {
      f = gamma * f + (1 - gamma) * g;
      G = gamma * G + (1 - gamma) * g * g;
      u = lr * g / std::sqrt(G - f * f + eps);
    } else if (algo == "adadelta") {
      G = gamma * G + (1 - gamma) * g * g;
      u = g * std::sqrt(X + eps) / std::sqrt(G + eps);
      X = gamma * X + (1 - gamma) * u * u;
    } else if (algo == "esgd") {
      D = gamma * D + (1 - gamma) * hv * hv;
      u = lr * g / (std::sqrt(D) + eps);
    } else if (algo == "adam") {
      m = beta1 * m + (1 - beta1) * g;
      v = beta2 * v + (1 - beta2) * g * g;
      u = lr * (m / (1 - std::pow(beta1, t))) / (std::sqrt(v / (1 - std::pow(beta2, t))) + eps);
    } else if (algo == "adamw") {
      // Adam with AdamW's defaults for what is unset: β 0.9/0.999, decay lr·1e-2·p.
      m = 0.9 * m + 0.1 * g;
      v = 0.999 * v + 0.001 * g * g;
      u = lr * (m / (1 - std::pow(0.9, t))) / (std::sqrt(v / (1 - std::pow(0.999, t))) + eps) +
          lr * 1e-2 * p;
    } else if (algo == "lion") {
      // β₁ 0.9, β₂ 0.99 (Lion's defaults): u = lr·sign(0.9m + 0.1g); m ← 0.99m + 0.01g.
      const double c = 0.9 * m + 0.1 * g;
      u = lr * (c > 0 ? 1 : c < 0 ? -1 : 0);
      m = 0.99 * m + 0.01 * g;
    } else {
      ADD_FAILURE() << "no reference for " << algo;
    }
    // NAG is Nesterov momentum (downhill's form); every other algorithm regular momentum.
    velocity = algo == "nag" ? mu * mu * velocity - (1 + mu) * u : mu * velocity - u;
    p += velocity;
  }
  return p;
}

// Every algorithm treats a 0-d or 3-d parameter as the same elements in a flat vector: the
// shaped and the flat runs agree, in float and double, fused and reference.
TEST(Shapes, EveryAlgorithmIsIndependentOfShape) {
  for (const auto& algo : downhill::builtin_algorithm_names()) {
    for (auto dtype : {torch::kFloat, torch::kDouble}) {
      for (const bool fused : {true, false}) {
        SCOPED_TRACE(algo + (dtype == torch::kFloat ? " float" : " double") +
                     (fused ? " fused" : " reference"));
        const auto f = torch::TensorOptions().dtype(dtype);
        auto scalar = torch::tensor(0.75, f);
        auto cube = torch::linspace(-1, 1, 24, f).reshape({2, 3, 4});
        auto flat_scalar = scalar.reshape({1}).clone();
        auto flat_cube = cube.flatten().clone();
        const auto options = downhill::Options()
                                 .learning_rate(0.05)
                                 .momentum(0.5)
                                 .max_gradient_norm(3)
                                 .rms_halflife(4)
                                 .fused(fused);
        auto shaped = downhill::build(algo, {{"s", scalar}, {"c", cube}}, options);
        auto flat = downhill::build(algo, {{"s", flat_scalar}, {"c", flat_cube}}, options);
        for (int step = 0; step < 3; ++step) {
          const auto g_scalar = torch::tensor(0.5 - step, f);
          const auto g_cube = torch::cos(torch::arange(24, f) * (step + 1.0)).reshape({2, 3, 4});
          const auto hv_cube = torch::sin(torch::arange(24, f) + step).reshape({2, 3, 4});
          ASSERT_TRUE(shaped->apply({g_scalar, g_cube}, {g_scalar, hv_cube}));
          ASSERT_TRUE(flat->apply({g_scalar.reshape({1}), g_cube.flatten()},
                                  {g_scalar.reshape({1}), hv_cube.flatten()}));
        }
        EXPECT_EQ(scalar.dim(), 0);
        EXPECT_TRUE(torch::allclose(scalar.reshape({1}), flat_scalar, 1e-6, 1e-7));
        EXPECT_TRUE(torch::allclose(cube.flatten(), flat_cube, 1e-6, 1e-7));
        // The scalar moved as the update rule says. Even ADADELTA's smallest move (about
        // 2.5e-4 on the first step) is far larger than the tolerance.
        const double expected = expected_scalar(algo);
        ASSERT_GT(std::abs(expected - 0.75), 1e-4);
        EXPECT_NEAR(scalar.item<double>(), expected, dtype == torch::kFloat ? 1e-6 : 1e-12);
        EXPECT_TRUE(torch::isfinite(cube).all().item<bool>());
      }
    }
  }
}

}  // namespace
