// The settings table: every setting declared once, and what derives from it — setting and
// reading by name, validation, which settings a parameter group may change, the settings log,
// checkpoints — with a user rule's own hyperparameter treated exactly like a built-in one.
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using downhill::testing::message_of;
using testing::HasSubstr;

// A user rule with a hyperparameter of its own: Signum, u = lr·sign(m) with
// m ← β·m + (1−β)·g (momentum's direction, sign only). β is declared in the settings table.
const downhill::Setting<double> kSignumBeta({.name = "signum_beta",
                                             .default_value = 0.9,
                                             .check = downhill::checks::interval(0, 1, true, false),
                                             .doc = "Signum's weight of m in its average"});

template <typename V>
struct Signum {
  static constexpr const char* name = "Signum";
  static constexpr std::array<const char*, 1> state = {"m"};
  static void declare_settings() { kSignumBeta.id(); }

  V lr, beta, rest;
  explicit Signum(const downhill::RuleContext& c)
      : lr(c.constant<V>(c.learning_rate())),
        beta(c.constant<V>(kSignumBeta(c.options()))),
        rest(c.constant<V>(1 - kSignumBeta(c.options()))) {}

  V operator()(const V& g, std::array<V, 1>& s) const {
    auto& [m] = s;
    m = beta * m + rest * g;
    return lr * downhill::lanes::sign(m);
  }
};

void register_signum_once() {
  static const bool registered = [] {
    downhill::register_rule<Signum>();
    return true;
  }();
  (void)registered;
}

torch::Tensor doubles(std::vector<double> values) { return torch::tensor(values, torch::kDouble); }

// One Signum update from m = m0 of gradient g, by hand: returns (p, m) after it.
std::pair<double, double> signum_by_hand(double p, double m, double g, double lr, double beta) {
  const double m_next = beta * m + (1 - beta) * g;
  const double sign = m_next > 0 ? 1.0 : (m_next < 0 ? -1.0 : 0.0);
  return {p - lr * sign, m_next};
}

TEST(SettingsTable, EverySettingHasOneRowWithItsDeclaration) {
  const auto ids = downhill::setting_ids();
  std::vector<std::string> names;
  for (const auto id : ids) names.push_back(downhill::setting_spec(id).name);
  // No name twice; the algorithms' hyperparameters follow the clipping settings.
  auto sorted = names;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
  const auto position = [&](const std::string& name) {
    return std::find(names.begin(), names.end(), name) - names.begin();
  };
  EXPECT_EQ(position("max_gradient_elem") + 1, position("rms_halflife"));
  EXPECT_LT(position("beta2_halflife"), position("weight_decay"));
  // What the table says of a few rows.
  const auto& momentum = downhill::setting_spec(*downhill::find_setting("momentum"));
  EXPECT_EQ(momentum.scope, downhill::SettingScope::kGroup);
  EXPECT_TRUE(momentum.saved);
  EXPECT_EQ(std::get<double>(momentum.default_value), 0.0);
  const auto& patience = downhill::setting_spec(*downhill::find_setting("patience"));
  EXPECT_EQ(patience.scope, downhill::SettingScope::kLoop);
  EXPECT_FALSE(patience.saved);
  const auto& hv = downhill::setting_spec(*downhill::find_setting("hv_method"));
  EXPECT_EQ(hv.choices, (std::vector<std::string>{"rop", "lop", "grad"}));
  EXPECT_EQ(hv.scope, downhill::SettingScope::kOptimizer);
  EXPECT_FALSE(downhill::find_setting("no_such_setting").has_value());
}

TEST(SettingsTable, SetByNameIsTheTypedSetter) {
  const auto by_name = downhill::Options()
                           .set("learning_rate", 0.25)
                           .set("momentum", 0.5)
                           .set("nesterov", true)
                           .set("patience", 3)
                           .set("max_updates", 7)
                           .set("rms_halflife", 20)  // an integer is taken for a number
                           .set("hv_method", "Grad")
                           .set("checkpoint", std::string("run.ckpt"))
                           .set("algo", "adam");
  const auto typed = downhill::Options()
                         .learning_rate(0.25)
                         .momentum(0.5)
                         .nesterov(true)
                         .patience(3)
                         .max_updates(7)
                         .rms_halflife(20.0)
                         .hv_method(downhill::HvMethod::kGrad)
                         .checkpoint("run.ckpt")
                         .algo("adam");
  EXPECT_EQ(by_name.settings(), typed.settings());
  EXPECT_EQ(by_name.get<double>("learning_rate"), 0.25);
  EXPECT_EQ(by_name.get<int64_t>("patience"), 3);
  EXPECT_EQ(by_name.get<std::optional<int64_t>>("max_updates"), 7);
  EXPECT_EQ(by_name.hv_method(), downhill::HvMethod::kGrad);
  EXPECT_EQ(by_name.get<double>("rms_halflife"), 20.0);
  // A whole number is taken for an integer setting; a fraction is not.
  EXPECT_EQ(downhill::Options().set("validate_every", 4.0).validate_every(), 4);
  EXPECT_THAT(
      message_of<std::invalid_argument>([] { downhill::Options().set("validate_every", 2.5); }),
      HasSubstr("validate_every cannot take 2.5; allowed: an integer"));
  EXPECT_THAT(message_of<std::invalid_argument>([] { downhill::Options().set("nesterov", 1.0); }),
              HasSubstr("nesterov cannot take"));
  EXPECT_THAT(message_of<std::invalid_argument>([] { downhill::Options().set("hv_method", "fd"); }),
              HasSubstr("allowed: one of rop, lop, grad"));
  EXPECT_THROW(static_cast<void>(by_name.get<bool>("learning_rate")), std::invalid_argument);
}

TEST(SettingsTable, AnUnknownNameIsRefusedWithTheClosestKnownOne) {
  const auto message =
      message_of<std::invalid_argument>([] { downhill::Options().set("learning_rat", 0.1); });
  EXPECT_THAT(message, HasSubstr("unknown setting 'learning_rat'"));
  EXPECT_THAT(message, HasSubstr("did you mean 'learning_rate'?"));
  EXPECT_THAT(message_of<std::invalid_argument>(
                  [] { static_cast<void>(downhill::Options().get<double>("momentun")); }),
              HasSubstr("did you mean 'momentum'?"));
}

TEST(SettingsTable, ADeclarationThatDiffersIsRefused) {
  // The same declaration again is the same setting.
  const downhill::Setting<double> again({.name = "signum_beta",
                                         .default_value = 0.9,
                                         .check = downhill::checks::interval(0, 1, true, false),
                                         .doc = "Signum's weight of m in its average"});
  EXPECT_EQ(again.id(), kSignumBeta.id());
  // Another default or another type is another setting under a taken name.
  EXPECT_THAT(message_of<std::invalid_argument>(
                  [] { downhill::Setting<double>({.name = "momentum", .default_value = 0.5}); }),
              HasSubstr("momentum is declared twice, differently"));
  EXPECT_THAT(message_of<std::invalid_argument>([] {
                downhill::Setting<int64_t>({.name = "learning_rate", .default_value = int64_t{1}});
              }),
              HasSubstr("learning_rate is declared twice"));
  EXPECT_THAT(message_of<std::invalid_argument>(
                  [] { downhill::Setting<double>({.name = "Beta", .default_value = 0.5}); }),
              HasSubstr("allowed: lower case letters, digits and '_'"));
}

TEST(SettingsTable, AGroupMayChangeOnlyItsScope) {
  auto w = torch::zeros({2}, torch::TensorOptions().dtype(torch::kDouble).requires_grad(true));
  auto b = torch::zeros({1}, torch::TensorOptions().dtype(torch::kDouble).requires_grad(true));
  // A loop setting, by name, in a group: refused naming it, and what a group may change, read
  // from the table (a user rule's hyperparameter among them).
  register_signum_once();
  downhill::Params params{{"w", w}};
  params.group({{"b", b}}, [](downhill::Options& o) { o.set("validate_every", 2); });
  const auto message =
      message_of<std::invalid_argument>([&] { downhill::build("sgd", params, {}); });
  EXPECT_THAT(message, HasSubstr("changes validate_every"));
  EXPECT_THAT(message, HasSubstr("learning_rate, momentum, nesterov"));
  EXPECT_THAT(message, HasSubstr("signum_beta"));
}

TEST(SettingsTable, AUserRulesHyperparameterIsSetPerBuildValidatedAndLogged) {
  register_signum_once();
  auto x = torch::zeros({3}, torch::kDouble);
  auto opt = downhill::build("signum", {{"x", x}},
                             downhill::Options().learning_rate(0.5).set("signum_beta", 0.5));
  EXPECT_EQ(kSignumBeta(opt->options()), 0.5);
  ASSERT_TRUE(opt->apply({doubles({1.0, -2.0, 0.0})}));
  // m = 0.5·0 + 0.5·g = (0.5, −1, 0); p = −0.5·sign(m).
  EXPECT_TRUE(torch::equal(x, doubles({-0.5, 0.5, 0.0})));
  // Another build reads its own value: the default.
  auto y = torch::zeros({1}, torch::kDouble);
  auto other = downhill::build("signum", {{"y", y}}, downhill::Options().learning_rate(1.0));
  ASSERT_TRUE(other->apply({doubles({-1.0})}));
  EXPECT_EQ(y.item<double>(), 1.0);
  EXPECT_EQ(kSignumBeta(other->options()), 0.9);
  // Validated at build with the others: its name, value and range.
  const auto message = message_of<std::invalid_argument>([&] {
    downhill::build("signum", {{"y", y}}, downhill::Options().set("signum_beta", 1.5));
  });
  EXPECT_THAT(message, HasSubstr("setting signum_beta = 1.5 is invalid; allowed: [0, 1)"));
  // Listed by settings(), hence logged and compared across ranks.
  const auto settings = opt->options().settings();
  EXPECT_NE(std::find(settings.begin(), settings.end(),
                      std::pair<std::string, std::string>{"signum_beta", "0.5"}),
            settings.end());
}

TEST(SettingsTable, AUserRulesHyperparameterChangesLivePerGroupAndResumes) {
  register_signum_once();
  downhill::testing::TemporaryFolder folder("settings_table");
  const double lr = 0.125;
  auto make = [&](torch::Tensor& a, torch::Tensor& b) {
    a = torch::zeros({1}, torch::kDouble);
    b = torch::zeros({1}, torch::kDouble);
    downhill::Params params{{"a", a}};
    params.group({{"b", b}}, [](downhill::Options& o) { o.set("signum_beta", 0.25); });
    return downhill::build("signum", params, downhill::Options().learning_rate(lr));
  };
  torch::Tensor a, b;
  auto opt = make(a, b);
  EXPECT_EQ(kSignumBeta(opt->group_options(1)), 0.25);
  // β of group 0 changes live; group 1 keeps its own.
  opt->change_options(0, [](downhill::Options& o) { o.set("signum_beta", 0.75); });
  EXPECT_EQ(kSignumBeta(opt->group_options(0)), 0.75);
  EXPECT_THROW(opt->change_options([](downhill::Options& o) { o.set("signum_beta", -1.0); }),
               std::invalid_argument);
  EXPECT_EQ(kSignumBeta(opt->options()), 0.75);  // a refused change changes nothing
  // Gradients +1 then −3: group 0 (β 0.75): m = 0.25, then 0.1875 − 0.75 = −0.5625;
  // group 1 (β 0.25): m = 0.75, then 0.1875 − 2.25 = −2.0625.
  auto pa = signum_by_hand(0, 0, 1, lr, 0.75);
  auto pb = signum_by_hand(0, 0, 1, lr, 0.25);
  ASSERT_TRUE(opt->apply({doubles({1.0}), doubles({1.0})}));
  const auto path = folder.file("signum.ckpt");
  opt->save_checkpoint(path);
  pa = signum_by_hand(pa.first, pa.second, -3, lr, 0.75);
  pb = signum_by_hand(pb.first, pb.second, -3, lr, 0.25);
  ASSERT_TRUE(opt->apply({doubles({-3.0}), doubles({-3.0})}));
  EXPECT_DOUBLE_EQ(a.item<double>(), pa.first);
  EXPECT_DOUBLE_EQ(b.item<double>(), pb.first);
  // A fresh optimizer built with the defaults takes β = 0.75 for group 0 from the checkpoint,
  // and continues exactly as the first did.
  torch::Tensor a2, b2;
  auto resumed = make(a2, b2);
  EXPECT_EQ(kSignumBeta(resumed->options()), 0.9);
  resumed->load_checkpoint(path);
  EXPECT_EQ(kSignumBeta(resumed->options()), 0.75);
  EXPECT_EQ(kSignumBeta(resumed->group_options(1)), 0.25);
  ASSERT_TRUE(resumed->apply({doubles({-3.0}), doubles({-3.0})}));
  EXPECT_TRUE(torch::equal(a2, a));
  EXPECT_TRUE(torch::equal(b2, b));
}

}  // namespace
