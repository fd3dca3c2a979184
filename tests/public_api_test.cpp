// The public names one by one, as include/downhill/*.h and docs/guide.md promise them:
// Monitors, Options::settings() and hv_method, infinite settings, Params, the optimizer's
// accessors and refusals, Iteration, a user algorithm with state, data sources, Dataset::peek
// and restore_position, hessian_vector_products and the registry.
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "test_support.h"

namespace {

using downhill::testing::message_of;
using testing::HasSubstr;

// Silences downhill for the whole program, and puts its level back at the end.
class QuietLogs : public ::testing::Environment {
 public:
  void SetUp() override {
    saved_ = downhill::logger()->level();
    downhill::logger()->set_level(spdlog::level::off);
  }
  void TearDown() override { downhill::logger()->set_level(saved_); }

 private:
  spdlog::level::level_enum saved_ = spdlog::level::info;
};
[[maybe_unused]] const auto* const kQuietLogs = ::testing::AddGlobalTestEnvironment(new QuietLogs);

// Like message_of<E>, but the exception must be exactly E, not a subclass
// (std::invalid_argument is a std::logic_error too).
template <typename Expected>
std::string exact_message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const std::exception& e) {
    EXPECT_EQ(std::string(typeid(e).name()), std::string(typeid(Expected).name()))
        << "threw another type: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "did not throw";
  return {};
}

torch::Tensor doubles(std::vector<double> values) { return torch::tensor(values, torch::kDouble); }

bool same_values(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && torch::equal(a, b);
}

// --- Monitors ---

TEST(PublicMonitors, ToStringGivesEveryEntryInOrderWithSixDecimals) {
  downhill::Monitors m;
  EXPECT_EQ(m.to_string(), "");
  m.set("loss", 0.5);
  m.set("err", -1.25);
  m.set("acc", 1.0 / 3.0);
  EXPECT_EQ(m.to_string(), "loss=0.500000 err=-1.250000 acc=0.333333");
}

TEST(PublicMonitors, SetAppendsANewNameAndReplacesAnExistingOneInPlace) {
  downhill::Monitors m;
  m.set("loss", 1.0);
  m.set("err", 2.0);
  m.set("acc", 3.0);
  m.set("err", 20.0);  // replaced where it was, not moved to the end
  m.set("new", 4.0);   // appended
  std::vector<std::pair<std::string, double>> entries(m.begin(), m.end());
  EXPECT_EQ(entries, (std::vector<std::pair<std::string, double>>{
                         {"loss", 1.0}, {"err", 20.0}, {"acc", 3.0}, {"new", 4.0}}));
  EXPECT_EQ(m.size(), 4u);
  EXPECT_DOUBLE_EQ(m.at("err"), 20.0);
  EXPECT_TRUE(m.contains("acc"));
  EXPECT_FALSE(m.contains("ac"));
  EXPECT_EQ(m.to_string(), "loss=1.000000 err=20.000000 acc=3.000000 new=4.000000");
}

TEST(PublicMonitors, AtAnUnknownNameThrowsOutOfRangeNamingTheKnownMonitors) {
  downhill::Monitors m;
  m.set("loss", 1.0);
  m.set("err", 2.0);
  const auto message = exact_message_of<std::out_of_range>([&] { (void)m.at("accuracy"); });
  EXPECT_THAT(message, HasSubstr("'accuracy'"));
  EXPECT_THAT(message, HasSubstr("known monitors: loss, err"));

  const downhill::Monitors none;
  const auto empty = exact_message_of<std::out_of_range>([&] { (void)none.at("loss"); });
  EXPECT_THAT(empty, HasSubstr("'loss'"));
  EXPECT_THAT(empty, HasSubstr("(none)"));
}

// --- Options ---

// Every built-in setting, in the settings table's order: the algorithms' hyperparameters, each
// declared in its algorithm's file (shared ones first, then by algorithm), after the clipping
// settings.
const std::vector<std::string> kSettingNames = {"algo",
                                                "learning_rate",
                                                "momentum",
                                                "nesterov",
                                                "max_gradient_norm",
                                                "max_gradient_elem",
                                                "rms_halflife",
                                                "rms_regularizer",
                                                "rprop_increase",
                                                "rprop_decrease",
                                                "rprop_min_step",
                                                "rprop_max_step",
                                                "hv_method",
                                                "beta1_halflife",
                                                "beta2_halflife",
                                                "lbfgs_history",
                                                "lbfgs_line_search",
                                                "lbfgs_line_search_evaluations",
                                                "wolfe_c1",
                                                "wolfe_c2",
                                                "weight_decay",
                                                "max_gradient_global_norm",
                                                "learning_rate_schedule",
                                                "accumulate",
                                                "fused",
                                                "patience",
                                                "validate_every",
                                                "min_improvement",
                                                "monitor",
                                                "monitor_mode",
                                                "plateau_patience",
                                                "plateau_factor",
                                                "plateau_min_learning_rate",
                                                "plateau_cooldown",
                                                "monitor_gradients",
                                                "batch_size",
                                                "full_batch",
                                                "max_passes",
                                                "max_steps",
                                                "gradient_tolerance",
                                                "loss_tolerance",
                                                "step_tolerance",
                                                "train_batches",
                                                "valid_batches",
                                                "max_nonfinite",
                                                "checkpoint",
                                                "checkpoint_every",
                                                "resume",
                                                "resume_required",
                                                "history",
                                                "distributed",
                                                "distributed_timeout",
                                                "process_group"};

std::string value_of(const std::vector<std::pair<std::string, std::string>>& settings,
                     const std::string& name) {
  for (const auto& [key, value] : settings) {
    if (key == name) return value;
  }
  ADD_FAILURE() << "no setting " << name;
  return {};
}

TEST(PublicOptions, SettingsListsEveryNameInDeclarationOrder) {
  const auto settings = downhill::Options().settings();
  ASSERT_EQ(settings.size(), 53u);
  std::vector<std::string> names;
  for (const auto& [name, value] : settings) names.push_back(name);
  EXPECT_EQ(names, kSettingNames);
}

TEST(PublicOptions, SettingsGiveTheDefaultValues) {
  const auto settings = downhill::Options().settings();
  // The defaults of docs/guide.md's tables.
  EXPECT_EQ(settings.front(), (std::pair<std::string, std::string>{"algo", "rmsprop"}));
  EXPECT_EQ(settings.back(), (std::pair<std::string, std::string>{"process_group", "none"}));
  EXPECT_EQ(value_of(settings, "history"), "none");
  EXPECT_EQ(value_of(settings, "distributed"), "false");
  EXPECT_EQ(value_of(settings, "distributed_timeout"), "60");
  EXPECT_EQ(value_of(settings, "momentum"), "0");
  EXPECT_EQ(value_of(settings, "nesterov"), "false");
  EXPECT_EQ(value_of(settings, "rms_halflife"), "14");
  EXPECT_EQ(value_of(settings, "beta2_halflife"), "69");
  EXPECT_EQ(value_of(settings, "rprop_increase"), "1.01");
  EXPECT_EQ(value_of(settings, "rprop_max_step"), "100");
  EXPECT_EQ(value_of(settings, "hv_method"), "rop");
  EXPECT_EQ(value_of(settings, "fused"), "true");
  EXPECT_EQ(value_of(settings, "patience"), "5");
  EXPECT_EQ(value_of(settings, "validate_every"), "10");
  EXPECT_EQ(value_of(settings, "batch_size"), "32");
  EXPECT_EQ(value_of(settings, "max_passes"), "unset");
  EXPECT_EQ(value_of(settings, "max_steps"), "unset");
  EXPECT_EQ(value_of(settings, "valid_batches"), "unset");
  EXPECT_EQ(value_of(settings, "max_nonfinite"), "10");
  EXPECT_EQ(value_of(settings, "checkpoint_every"), "1");
}

TEST(PublicOptions, SettingsGiveTheValuesSet) {
  const auto settings = downhill::Options()
                            .algo("adam")
                            .learning_rate(0.5)
                            .momentum(0.25)
                            .nesterov(true)
                            .hv_method(downhill::HvMethod::kGrad)
                            .fused(false)
                            .patience(2)
                            .monitor_gradients(true)
                            .batch_size(-1)
                            .max_updates(7)
                            .train_batches(3)
                            .checkpoint("run.ckpt")
                            .resume(true)
                            .settings();
  ASSERT_EQ(settings.size(), 53u);
  const std::vector<std::pair<std::string, std::string>> expected_head = {
      {"algo", "adam"}, {"learning_rate", "0.5"}, {"momentum", "0.25"}, {"nesterov", "true"}};
  EXPECT_EQ(std::vector(settings.begin(), settings.begin() + 4), expected_head);
  EXPECT_EQ(settings[12], (std::pair<std::string, std::string>{"hv_method", "grad"}));
  EXPECT_EQ(settings[24], (std::pair<std::string, std::string>{"fused", "false"}));
  EXPECT_EQ(value_of(settings, "patience"), "2");
  EXPECT_EQ(value_of(settings, "monitor_gradients"), "true");
  EXPECT_EQ(value_of(settings, "batch_size"), "-1");
  // max_updates is the seed's name for max_passes, listed under its own name.
  EXPECT_EQ(settings[37], (std::pair<std::string, std::string>{"max_passes", "7"}));
  EXPECT_EQ(settings[38], (std::pair<std::string, std::string>{"max_steps", "unset"}));
  EXPECT_EQ(settings[42], (std::pair<std::string, std::string>{"train_batches", "3"}));
  EXPECT_EQ(settings[43], (std::pair<std::string, std::string>{"valid_batches", "unset"}));
  EXPECT_EQ(settings[45], (std::pair<std::string, std::string>{"checkpoint", "run.ckpt"}));
  EXPECT_EQ(settings[47], (std::pair<std::string, std::string>{"resume", "true"}));
}

TEST(PublicOptions, ToStringOfEachHvMethod) {
  EXPECT_EQ(downhill::to_string(downhill::HvMethod::kRop), "rop");
  EXPECT_EQ(downhill::to_string(downhill::HvMethod::kLop), "lop");
  EXPECT_EQ(downhill::to_string(downhill::HvMethod::kGrad), "grad");
}

TEST(PublicOptions, HvMethodParsesEachNameInAnyCase) {
  const std::vector<std::pair<std::string, downhill::HvMethod>> cases = {
      {"rop", downhill::HvMethod::kRop},   {"ROP", downhill::HvMethod::kRop},
      {"rOp", downhill::HvMethod::kRop},   {"lop", downhill::HvMethod::kLop},
      {"Lop", downhill::HvMethod::kLop},   {"LOP", downhill::HvMethod::kLop},
      {"grad", downhill::HvMethod::kGrad}, {"GRAD", downhill::HvMethod::kGrad},
      {"gRaD", downhill::HvMethod::kGrad},
  };
  for (const auto& [name, method] : cases) {
    // Start from a different method, so that a setter that does nothing is caught.
    const auto other =
        method == downhill::HvMethod::kLop ? downhill::HvMethod::kGrad : downhill::HvMethod::kLop;
    downhill::Options options;
    options.hv_method(other);
    EXPECT_EQ(options.hv_method(std::string_view(name)).hv_method(), method) << name;
  }
}

TEST(PublicOptions, HvMethodRefusesAnUnknownName) {
  for (const std::string name : {"hessian", "", "rop ", "ropp", "r"}) {
    downhill::Options options;
    options.hv_method(downhill::HvMethod::kLop);
    const auto message =
        exact_message_of<std::invalid_argument>([&] { options.hv_method(std::string_view(name)); });
    EXPECT_THAT(message, HasSubstr("hv_method = '" + name + "'")) << name;
    EXPECT_THAT(message, HasSubstr("rop, lop, grad")) << name;
    EXPECT_EQ(options.hv_method(), downhill::HvMethod::kLop) << name;  // left as it was
  }
}

// An infinite value makes sense for none of the real-valued settings (docs/guide.md
// gives each a finite range, or "0 = off" where a bound could be infinite).
struct InfiniteSetting {
  std::string name;
  std::function<downhill::Options(double)> set;
};

std::vector<InfiniteSetting> infinite_settings() {
  using O = downhill::Options;
  return {
      {"learning_rate", [](double v) { return O().learning_rate(v); }},
      {"momentum", [](double v) { return O().momentum(v); }},
      {"max_gradient_norm", [](double v) { return O().max_gradient_norm(v); }},
      {"max_gradient_elem", [](double v) { return O().max_gradient_elem(v); }},
      {"rms_halflife", [](double v) { return O().rms_halflife(v); }},
      {"rms_regularizer", [](double v) { return O().rms_regularizer(v); }},
      {"beta1_halflife", [](double v) { return O().beta1_halflife(v); }},
      {"beta2_halflife", [](double v) { return O().beta2_halflife(v); }},
      {"rprop_increase", [](double v) { return O().rprop_increase(v); }},
      {"rprop_decrease", [](double v) { return O().rprop_decrease(v); }},
      // A finite max step keeps rprop_max_step >= rprop_min_step out of the way for -inf.
      {"rprop_min_step", [](double v) { return O().rprop_min_step(v).rprop_max_step(1e300); }},
      {"rprop_max_step", [](double v) { return O().rprop_max_step(v); }},
      {"min_improvement", [](double v) { return O().min_improvement(v); }},
  };
}

TEST(PublicOptions, InfiniteSettingsAreRefused) {
  const double inf = std::numeric_limits<double>::infinity();
  const auto cases = infinite_settings();
  ASSERT_EQ(cases.size(), 13u);
  int refused = 0;
  for (const auto& c : cases) {
    for (const double value : {inf, -inf}) {
      SCOPED_TRACE(c.name + " = " + std::to_string(value));
      const auto options = c.set(value);
      const auto message = exact_message_of<std::invalid_argument>([&] { options.validate(); });
      EXPECT_THAT(message, HasSubstr("setting " + c.name + " = " + (value > 0 ? "inf" : "-inf")));
      EXPECT_THROW(downhill::build("sgd", {{"x", torch::zeros({1}, torch::kDouble)}}, options),
                   std::invalid_argument);
      ++refused;
    }
  }
  EXPECT_EQ(refused, 26);
}

// --- Params ---

TEST(PublicParams, FromAModulesNamedParametersSharingItsTensors) {
  torch::manual_seed(3);
  torch::nn::Linear linear(3, 2);
  const downhill::Params params(linear->named_parameters());
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params.name(0), "weight");
  EXPECT_EQ(params.name(1), "bias");
  EXPECT_TRUE(params.tensor(0).is_same(linear->weight));
  EXPECT_TRUE(params.tensor(1).is_same(linear->bias));

  // The optimizer updates the module's own tensors: SGD, p ← p − 0.5·1.
  const auto weight_before = linear->weight.detach().clone();
  const auto bias_before = linear->bias.detach().clone();
  auto opt =
      downhill::build("sgd", linear->named_parameters(), downhill::Options().learning_rate(0.5));
  ASSERT_TRUE(opt->apply({torch::ones({2, 3}), torch::ones({2})}));
  EXPECT_TRUE(torch::allclose(linear->weight.detach(), weight_before - 0.5));
  EXPECT_TRUE(torch::allclose(linear->bias.detach(), bias_before - 0.5));
  EXPECT_FALSE(torch::allclose(linear->weight.detach(), weight_before));
}

// As torch::optim accepts {a, b}: a brace list of tensors, shared, named param0, param1.
TEST(PublicParams, FromBraceListOfTensors) {
  auto a = torch::zeros({2}, torch::kDouble);
  auto b = torch::ones({1, 3}, torch::kDouble);
  const downhill::Params params{a, b};
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params.name(0), "param0");
  EXPECT_EQ(params.name(1), "param1");
  EXPECT_TRUE(params.tensor(0).is_same(a));
  EXPECT_TRUE(params.tensor(1).is_same(b));

  // Straight into build(), and the update reaches the caller's tensors: p ← p − 0.5·1.
  auto opt = downhill::build("sgd", {a, b}, downhill::Options().learning_rate(0.5));
  ASSERT_EQ(opt->params().name(1), "param1");
  ASSERT_TRUE(opt->apply({torch::ones({2}, torch::kDouble), torch::ones({1, 3}, torch::kDouble)}));
  EXPECT_TRUE(torch::equal(a, torch::full({2}, -0.5, torch::kDouble)));
  EXPECT_TRUE(torch::equal(b, torch::full({1, 3}, 0.5, torch::kDouble)));

  // Named entries keep their meaning: {{"x", a}} is one parameter named x.
  const downhill::Params named{{"x", a}};
  ASSERT_EQ(named.size(), 1u);
  EXPECT_EQ(named.name(0), "x");
}

TEST(PublicParams, FromPlainTensorsNamedParamZeroOneTwo) {
  auto t0 = torch::zeros({2}, torch::kDouble);
  auto t1 = torch::ones({1, 3}, torch::kDouble);
  auto t2 = torch::full({1}, 2.0, torch::kDouble);
  const downhill::Params params(std::vector<torch::Tensor>{t0, t1, t2});
  ASSERT_EQ(params.size(), 3u);
  EXPECT_EQ(params.name(0), "param0");
  EXPECT_EQ(params.name(1), "param1");
  EXPECT_EQ(params.name(2), "param2");
  EXPECT_TRUE(params.tensor(1).is_same(t1));
  const auto tensors = params.tensors();
  ASSERT_EQ(tensors.size(), 3u);
  EXPECT_TRUE(tensors[2].is_same(t2));

  // Through build's implicit conversion too.
  auto opt = downhill::build("sgd", std::vector<torch::Tensor>{t0, t1});
  ASSERT_EQ(opt->params().size(), 2u);
  EXPECT_EQ(opt->params().name(1), "param1");
}

TEST(PublicParams, NameGivesEachEntrysName) {
  const downhill::Params params{{"u", torch::zeros({1})}, {"v", torch::zeros({1})}};
  EXPECT_EQ(params.name(0), "u");
  EXPECT_EQ(params.name(1), "v");
}

// --- The optimizer's accessors and refusals ---

TEST(PublicOptimizer, ParamsAndOptionsReturnWhatWasGiven) {
  auto u = torch::zeros({2}, torch::kDouble);
  auto v = torch::zeros({3, 1}, torch::kDouble);
  const auto given =
      downhill::Options().learning_rate(0.25).momentum(0.5).patience(3).max_updates(9);
  auto opt = downhill::build("adam", {{"u", u}, {"v", v}}, given);
  const auto& params = opt->params();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params.name(0), "u");
  EXPECT_EQ(params.name(1), "v");
  EXPECT_TRUE(params.tensor(0).is_same(u));
  EXPECT_TRUE(params.tensor(1).is_same(v));
  EXPECT_DOUBLE_EQ(opt->options().learning_rate(), 0.25);
  EXPECT_DOUBLE_EQ(opt->options().momentum(), 0.5);
  EXPECT_EQ(opt->options().patience(), 3);
  EXPECT_EQ(opt->options().max_updates(), std::optional<int64_t>(9));
  EXPECT_EQ(opt->options().settings(), given.settings());
}

TEST(PublicOptimizer, AGradientOnAnotherDeviceIsRefusedNamingTheParameter) {
  auto u = torch::zeros({2}, torch::kDouble);
  auto v = torch::zeros({3}, torch::kDouble);
  auto opt = downhill::build("sgd", {{"u", u}, {"v", v}}, downhill::Options().learning_rate(1));
  // The meta device exists in every LibTorch build, CPU-only ones included.
  const auto on_meta =
      torch::ones({3}, torch::TensorOptions().dtype(torch::kDouble).device(torch::kMeta));
  ASSERT_EQ(on_meta.device().type(), torch::kMeta);
  const auto message = exact_message_of<std::invalid_argument>([&] {
    opt->apply({torch::ones({2}, torch::kDouble), on_meta});
  });
  EXPECT_THAT(message, HasSubstr("parameter 'v'"));
  EXPECT_THAT(message, HasSubstr("on meta"));
  EXPECT_THAT(message, HasSubstr("on cpu"));
  // Nothing was updated, not even the first parameter.
  EXPECT_TRUE(same_values(u, torch::zeros({2}, torch::kDouble)));
  EXPECT_TRUE(same_values(v, torch::zeros({3}, torch::kDouble)));
  EXPECT_EQ(opt->update_count(), 0);
}

TEST(PublicOptimizer, StepEvaluateAndIterateNeedALoss) {
  auto x = torch::zeros({1}, torch::kDouble);
  auto opt = downhill::build("sgd", {{"x", x}});
  downhill::Dataset data{downhill::Batch{}};
  // A logic error (a misuse), not std::invalid_argument.
  EXPECT_THAT(exact_message_of<std::logic_error>([&] { opt->step({}); }),
              HasSubstr("step() needs a loss"));
  EXPECT_THAT(exact_message_of<std::logic_error>([&] { opt->evaluate(data); }),
              HasSubstr("evaluate() needs a loss"));
  EXPECT_THAT(exact_message_of<std::logic_error>([&] { opt->iterate(data); }),
              HasSubstr("iterate() needs a loss"));
  EXPECT_THAT(exact_message_of<std::logic_error>([&] { opt->minimize(data); }),
              HasSubstr("needs a loss"));
  EXPECT_EQ(opt->update_count(), 0);
  EXPECT_DOUBLE_EQ(x.item<double>(), 0.0);
}

// --- Iteration ---

TEST(PublicIteration, AnIterationCanBeWalkedOnlyOnce) {
  auto x = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
  int steps = 0;
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    if (torch::GradMode::is_enabled()) ++steps;
    return x.sum();
  };
  auto opt = downhill::build("sgd", loss, {{"x", x}},
                             downhill::Options().validate_every(1).patience(10).max_updates(2));
  downhill::Dataset data{downhill::Batch{}};
  auto range = opt->iterate(data);
  int items = 0;
  for (const auto& item : range) {
    (void)item;
    ++items;
  }
  EXPECT_EQ(items, 2);
  EXPECT_EQ(steps, 2);
  // A second walk is a misuse: it throws instead of silently yielding nothing.
  const auto message = exact_message_of<std::logic_error>([&] {
    for (const auto& item : range) (void)item;
  });
  EXPECT_THAT(message, HasSubstr("walked only once"));
  EXPECT_EQ(steps, 2);

  // So is a second begin() while the first walk is under way.
  auto fresh = opt->iterate(data);
  auto it = fresh.begin();
  EXPECT_NE(it, fresh.end());
  EXPECT_THROW(fresh.begin(), std::logic_error);
}

// --- A user algorithm with state ---

// u = lr · scale · g, then sum ← sum + g and scale ← scale + 1. "scale" starts at 2
// (initial_state), so the first update is 2·lr·g; begin_update counts updates.
class ScaledSum : public downhill::Optimizer {
 public:
  ScaledSum(downhill::Loss loss, downhill::Params params, downhill::Options options)
      : Optimizer("ScaledSum", std::move(loss), std::move(params), std::move(options)) {}

  int begin_calls = 0;
  int compute_calls = 0;

 protected:
  std::vector<std::string> state_names() const override { return {"sum", "scale"}; }
  torch::Tensor initial_state(size_t slot, const torch::Tensor& param) const override {
    return slot == 1 ? torch::full_like(param, 2.0) : torch::zeros_like(param);
  }
  void begin_update() override { ++begin_calls; }
  torch::Tensor compute_update(size_t, const torch::Tensor& grad, const torch::Tensor&,
                               std::vector<torch::Tensor>& state) override {
    ++compute_calls;
    auto update = options().learning_rate() * state[1] * grad;
    state[0].add_(grad);
    state[1].add_(1.0);
    return update;
  }
};

// Registered once per process, so that --gtest_repeat works.
const char* scaled_sum_name() {
  static const bool registered = [] {
    downhill::register_algorithm("api_test_scaled_sum", [](downhill::Loss loss,
                                                           downhill::Params params,
                                                           downhill::Options options) {
      return std::make_unique<ScaledSum>(std::move(loss), std::move(params), std::move(options));
    });
    return true;
  }();
  (void)registered;
  return "api_test_scaled_sum";
}

ScaledSum& as_scaled_sum(downhill::Optimizer& opt) {
  auto* typed = dynamic_cast<ScaledSum*>(&opt);
  EXPECT_NE(typed, nullptr);
  return *typed;
}

std::vector<std::string> state_names_of(downhill::Optimizer& opt) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : opt.state()) names.push_back(name);
  return names;
}

torch::Tensor state_of(downhill::Optimizer& opt, const std::string& name) {
  for (const auto& [key, tensor] : opt.state()) {
    if (key == name) return tensor;
  }
  ADD_FAILURE() << "no state " << name;
  return {};
}

class UserAlgorithm : public testing::Test {
 protected:
  void SetUp() override {
    a_ = doubles({1.0, 2.0});
    b_ = torch::full({1, 1}, 0.5, torch::kDouble);
    opt_ = downhill::build(scaled_sum_name(), {{"a", a_}, {"b", b_}},
                           downhill::Options().learning_rate(0.5));
  }

  // The same gradients every time: (1, −1) for a, 2 for b.
  bool update(downhill::Optimizer& opt) const {
    return opt.apply({doubles({1.0, -1.0}), torch::full({1, 1}, 2.0, torch::kDouble)});
  }

  torch::Tensor a_, b_;
  std::unique_ptr<downhill::Optimizer> opt_;
};

TEST_F(UserAlgorithm, StateIsNamedParamDotSlotAndStartsFromInitialState) {
  EXPECT_EQ(opt_->name(), "ScaledSum");
  EXPECT_EQ(state_names_of(*opt_),
            (std::vector<std::string>{"a.sum", "a.scale", "b.sum", "b.scale"}));
  EXPECT_TRUE(same_values(state_of(*opt_, "a.sum"), doubles({0.0, 0.0})));
  EXPECT_TRUE(same_values(state_of(*opt_, "a.scale"), doubles({2.0, 2.0})));
  EXPECT_TRUE(same_values(state_of(*opt_, "b.scale"), torch::full({1, 1}, 2.0, torch::kDouble)));
}

TEST_F(UserAlgorithm, UpdatesUseTheStateAndBeginUpdateRunsOncePerUpdate) {
  auto& typed = as_scaled_sum(*opt_);
  ASSERT_TRUE(update(*opt_));
  // a ← (1, 2) − 0.5·2·(1, −1) = (0, 3); b ← 0.5 − 0.5·2·2 = −1.5.
  EXPECT_TRUE(same_values(a_, doubles({0.0, 3.0})));
  EXPECT_DOUBLE_EQ(b_.item<double>(), -1.5);
  ASSERT_TRUE(update(*opt_));
  // scale is 3 now: a ← (0, 3) − 1.5·(1, −1) = (−1.5, 4.5); b ← −1.5 − 1.5·2 = −4.5.
  EXPECT_TRUE(same_values(a_, doubles({-1.5, 4.5})));
  EXPECT_DOUBLE_EQ(b_.item<double>(), -4.5);
  EXPECT_EQ(typed.begin_calls, 2);    // once per update, not once per parameter
  EXPECT_EQ(typed.compute_calls, 4);  // once per parameter and update
  EXPECT_EQ(opt_->update_count(), 2);
  EXPECT_TRUE(same_values(state_of(*opt_, "a.sum"), doubles({2.0, -2.0})));
  EXPECT_TRUE(same_values(state_of(*opt_, "a.scale"), doubles({4.0, 4.0})));
  EXPECT_TRUE(same_values(state_of(*opt_, "b.sum"), torch::full({1, 1}, 4.0, torch::kDouble)));
}

TEST_F(UserAlgorithm, StateIsSavedAndLoadedByCheckpoints) {
  ASSERT_TRUE(update(*opt_));
  ASSERT_TRUE(update(*opt_));
  const auto path = (std::filesystem::temp_directory_path() /
                     ("downhill_api_test_" + std::to_string(::getpid()) + ".ckpt"))
                        .string();
  opt_->save_checkpoint(path);

  auto a2 = torch::zeros({2}, torch::kDouble);
  auto b2 = torch::zeros({1, 1}, torch::kDouble);
  auto loaded = downhill::build(scaled_sum_name(), {{"a", a2}, {"b", b2}},
                                downhill::Options().learning_rate(0.5));
  loaded->load_checkpoint(path);
  std::filesystem::remove(path);
  EXPECT_TRUE(same_values(a2, doubles({-1.5, 4.5})));
  EXPECT_DOUBLE_EQ(b2.item<double>(), -4.5);
  EXPECT_TRUE(same_values(state_of(*loaded, "a.sum"), doubles({2.0, -2.0})));
  EXPECT_TRUE(same_values(state_of(*loaded, "a.scale"), doubles({4.0, 4.0})));
  EXPECT_TRUE(same_values(state_of(*loaded, "b.sum"), torch::full({1, 1}, 4.0, torch::kDouble)));
  EXPECT_TRUE(same_values(state_of(*loaded, "b.scale"), torch::full({1, 1}, 4.0, torch::kDouble)));
  EXPECT_EQ(loaded->update_count(), 2);

  // The third update uses the loaded scale 4: a ← (−1.5, 4.5) − 2·(1, −1); b ← −4.5 − 2·2.
  ASSERT_TRUE(update(*loaded));
  EXPECT_TRUE(same_values(a2, doubles({-3.5, 6.5})));
  EXPECT_DOUBLE_EQ(b2.item<double>(), -8.5);
  EXPECT_EQ(as_scaled_sum(*loaded).begin_calls, 1);
}

// --- Data sources ---

TEST(PublicDataSource, ATemporaryDatasetIsUsedAsItIs) {
  auto w = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
  std::vector<int64_t> batch_sizes;
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    batch_sizes.push_back(batch.at(0).size(0));
    return batch[0].mean() + 0 * w.sum();
  };
  // The options' batch_size and train_batches would give batches of 4, 3 per pass;
  // the dataset's own settings (batches of 2, 2 per pass, in order) must win.
  const auto [training, validation] = downhill::minimize(
      loss, {{"w", w}},
      downhill::Dataset({doubles({1, 2, 3, 4, 5, 6})},
                        downhill::DatasetOptions().batch_size(2).shuffle(false).iteration_size(2)),
      downhill::Options().algo("sgd").batch_size(4).train_batches(3).validate_every(1).max_updates(
          1));
  // Validation, training, and the closing validation when max_updates ends the run.
  EXPECT_EQ(batch_sizes, (std::vector<int64_t>{2, 2, 2, 2, 2, 2}));
  // Validation: slices (1, 2), (3, 4): 2.5. Training: (5, 6), then the wrap to (1, 2): 3.5.
  // (The closing validation, (3, 4) and (5, 6): 4.5, is not reported in the last pair.)
  EXPECT_DOUBLE_EQ(validation.at("loss"), 2.5);
  EXPECT_DOUBLE_EQ(training.at("loss"), 3.5);
}

TEST(PublicDataSource, MinimizeWithAGeneratorAndNoParamsFindsThem) {
  auto w = doubles({0.5, -0.5}).requires_grad_(true);
  int calls = 0;
  auto generator = [&]() -> downhill::Batch {
    ++calls;
    return {torch::ones({2}, torch::kDouble)};
  };
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    return (w * batch[0]).sum();  // gradient (1, 1)
  };
  const auto [training, validation] = downhill::minimize(loss, generator,
                                                         downhill::Options()
                                                             .algo("sgd")
                                                             .learning_rate(0.25)
                                                             .train_batches(2)
                                                             .validate_every(1)
                                                             .patience(10)
                                                             .max_updates(2));
  // Validation 1 at w0 (loss 0); pass 1: two steps of 0.25 → w1 = (0, −1); validation 2
  // there (loss −1); pass 2 → w2 = (−0.5, −1.5); max_updates ends the run with a closing
  // validation of w2 (loss −2), the best, so w2 stays.
  EXPECT_TRUE(same_values(w.detach(), doubles({-0.5, -1.5})));
  EXPECT_DOUBLE_EQ(validation.at("loss"), -1.0);  // the last pair's: validation 2
  EXPECT_DOUBLE_EQ(training.at("loss"), -1.25);   // pass 2: mean of −1 and −1.5
  // Two batches for each of 3 validations and 2 passes; the batch looked at to find the
  // parameters is the first one validated, not an extra call.
  EXPECT_EQ(calls, 10);
}

// --- Dataset ---

TEST(PublicDataset, PeekReturnsWhatNextReturnsWithoutConsumingIt) {
  downhill::Dataset data({doubles({10, 20, 30})},
                         downhill::DatasetOptions().batch_size(1).shuffle(false));
  const auto first = data.peek();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_TRUE(same_values(first[0], doubles({10})));
  EXPECT_TRUE(same_values(data.peek()[0], doubles({10})));  // peeking again changes nothing
  EXPECT_EQ(data.position(), 0);
  EXPECT_TRUE(same_values(data.next()[0], doubles({10})));
  EXPECT_TRUE(same_values(data.peek()[0], doubles({20})));
  EXPECT_TRUE(same_values(data.next()[0], doubles({20})));
  EXPECT_TRUE(same_values(data.next()[0], doubles({30})));
  EXPECT_EQ(data.position(), 0);
}

TEST(PublicDataset, PeekOnAGeneratorCallsItOnceAndNextReturnsThatBatch) {
  int calls = 0;
  downhill::Dataset data(std::function<downhill::Batch()>([&]() -> downhill::Batch {
    ++calls;
    return {torch::full({1}, static_cast<double>(calls), torch::kDouble)};
  }));
  EXPECT_DOUBLE_EQ(data.peek()[0].item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(data.peek()[0].item<double>(), 1.0);
  EXPECT_EQ(calls, 1);
  EXPECT_DOUBLE_EQ(data.next()[0].item<double>(), 1.0);
  EXPECT_EQ(calls, 1);
  EXPECT_DOUBLE_EQ(data.next()[0].item<double>(), 2.0);
  EXPECT_EQ(calls, 2);
}

TEST(PublicDataset, RestorePositionAcceptsAPermutationAndAPositionInIt) {
  downhill::Dataset data({doubles({10, 20, 30})},
                         downhill::DatasetOptions().batch_size(1).shuffle(false));
  data.restore_position({2, 0, 1}, 1);
  EXPECT_EQ(data.order(), (std::vector<int64_t>{2, 0, 1}));
  EXPECT_EQ(data.position(), 1);
  EXPECT_TRUE(same_values(data.next()[0], doubles({10})));  // order[1] = slice 0
  EXPECT_TRUE(same_values(data.next()[0], doubles({20})));
}

TEST(PublicDataset, RestorePositionRefusesWhatDoesNotFit) {
  downhill::Dataset data({doubles({10, 20, 30})},
                         downhill::DatasetOptions().name("digits").batch_size(1).shuffle(false));
  struct Case {
    std::vector<int64_t> order;
    int64_t position;
    std::string detail;  // the part of the message about this case
  };
  const std::vector<Case> cases = {
      {{0, 0, 1}, 0, "saved order (3 entries) or position (0)"},   // a repeat
      {{0, 1, 3}, 0, "saved order (3 entries) or position (0)"},   // out of range
      {{0, 1, -1}, 0, "saved order (3 entries) or position (0)"},  // negative
      {{0, 1}, 0, "saved order (2 entries) or position (0)"},      // too short
      {{0, 1, 2, 3}, 0, "saved order (4 entries) or position (0)"},
      {{2, 1, 0}, 3, "saved order (3 entries) or position (3)"},  // position past the end
      {{2, 1, 0}, -1, "saved order (3 entries) or position (-1)"},
  };
  for (const auto& c : cases) {
    const auto message = exact_message_of<std::invalid_argument>(
        [&] { data.restore_position(c.order, c.position); });
    EXPECT_THAT(message, HasSubstr("dataset 'digits' has 3 slices")) << c.detail;
    EXPECT_THAT(message, HasSubstr(c.detail));
    // Nothing changed.
    EXPECT_EQ(data.order(), (std::vector<int64_t>{0, 1, 2}));
    EXPECT_EQ(data.position(), 0);
  }
}

TEST(PublicDataset, AnEmptyGeneratorFunctionIsRefused) {
  const auto message = exact_message_of<std::invalid_argument>([] {
    downhill::Dataset data(std::function<downhill::Batch()>{},
                           downhill::DatasetOptions().name("gen"));
  });
  EXPECT_THAT(message, HasSubstr("dataset 'gen'"));
  EXPECT_THAT(message, HasSubstr("generator is empty"));
}

// minimize() given an empty std::function<Batch()> as its data refuses it as Dataset does,
// before the loss is ever called (it once took it for a Batch and read an empty optional).
TEST(PublicDataSource, MinimizeRefusesAnEmptyGeneratorFunction) {
  auto w = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
  int calls = 0;
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    ++calls;
    return w.sum();
  };
  const auto message = message_of<std::invalid_argument>([&] {
    downhill::minimize(loss, {{"w", w}}, std::function<downhill::Batch()>{},
                       downhill::Options().algo("sgd").max_updates(1));
  });
  EXPECT_THAT(message, HasSubstr("dataset 'train': the generator is empty"));
  EXPECT_EQ(calls, 0);
}

// --- hessian_vector_products ---

TEST(PublicHessian, MismatchedCountsAreRefused) {
  auto p1 = torch::zeros({2}, torch::dtype(torch::kDouble).requires_grad(true));
  auto p2 = torch::zeros({3}, torch::dtype(torch::kDouble).requires_grad(true));
  const auto r1 = torch::ones({2}, torch::kDouble), r2 = torch::ones({3}, torch::kDouble);
  auto grads = torch::autograd::grad({(p1.square().sum() + p2.square().sum())}, {p1, p2}, {},
                                     /*retain_graph=*/true, /*create_graph=*/true);
  const auto fewer_grads = exact_message_of<std::invalid_argument>([&] {
    downhill::hessian_vector_products({grads[0]}, {p1, p2}, {r1, r2}, downhill::HvMethod::kRop);
  });
  EXPECT_THAT(fewer_grads, HasSubstr("got 1 gradients and 2 probes for 2 parameters"));
  const auto fewer_probes = exact_message_of<std::invalid_argument>([&] {
    downhill::hessian_vector_products(grads, {p1, p2}, {r1}, downhill::HvMethod::kLop);
  });
  EXPECT_THAT(fewer_probes, HasSubstr("got 2 gradients and 1 probes for 2 parameters"));
  const auto more_probes = exact_message_of<std::invalid_argument>([&] {
    downhill::hessian_vector_products(grads, {p1, p2}, {r1, r2, r2}, downhill::HvMethod::kGrad);
  });
  EXPECT_THAT(more_probes, HasSubstr("got 2 gradients and 3 probes for 2 parameters"));
}

// --- The registry ---

TEST(PublicRegistry, AnEmptyNameIsRefused) {
  const auto message = exact_message_of<std::invalid_argument>([] {
    downhill::register_algorithm(
        "",
        [](downhill::Loss, downhill::Params,
           downhill::Options) -> std::unique_ptr<downhill::Optimizer> { return nullptr; });
  });
  EXPECT_THAT(message, HasSubstr("must not be empty"));
  const auto names = downhill::algorithm_names();
  EXPECT_EQ(std::find(names.begin(), names.end(), ""), names.end());
}

TEST(PublicRegistry, AlgorithmNamesAreSortedLowerCaseAndHoldTheBuiltins) {
  // A name registered in mixed case is listed in lower case (registered once per process).
  static const bool registered = [] {
    downhill::register_algorithm("Api_Test_MixedCase", [](downhill::Loss loss,
                                                          downhill::Params params,
                                                          downhill::Options options) {
      return std::make_unique<ScaledSum>(std::move(loss), std::move(params), std::move(options));
    });
    return true;
  }();
  ASSERT_TRUE(registered);
  const auto names = downhill::algorithm_names();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end());  // no duplicates
  for (const auto& name : names) {
    EXPECT_TRUE(std::none_of(name.begin(), name.end(), [](unsigned char c) {
      return std::isupper(c) != 0;
    })) << name;
  }
  const auto builtins = downhill::builtin_algorithm_names();
  for (const auto& builtin : builtins) {
    EXPECT_NE(std::find(names.begin(), names.end(), builtin), names.end()) << builtin;
  }
  EXPECT_NE(std::find(names.begin(), names.end(), "api_test_mixedcase"), names.end());
  EXPECT_GE(names.size(), builtins.size() + 1);
}

}  // namespace
