// L-BFGS: limited-memory BFGS over all the parameters that update, as one vector, with a
// strong-Wolfe line search (lbfgs_search.cpp). Its state is the curvature pairs: slots "s"
// and "y" of each parameter, one row per pair, the newest last. An update evaluates the loss
// several times, so it runs through step() (and the loop), never the update chain.
#include <cmath>
#include <stdexcept>
#include <string>

#include "algorithms/builtin.h"
#include "lbfgs_search.h"

namespace downhill::detail {

namespace {

struct Hyperparameters {
  Setting<int64_t> history{{.name = "lbfgs_history",
                            .default_value = int64_t{10},
                            .scope = SettingScope::kOptimizer,
                            .check = checks::integer_at_least(1),
                            .doc = "L-BFGS's number of curvature pairs kept (history_size); >= 1. "
                                   "A change keeps the newest pairs."}};
  Setting<int64_t> line_search{{.name = "lbfgs_line_search",
                                .default_value = int64_t{0},
                                .scope = SettingScope::kOptimizer,
                                .choices = {"strong_wolfe", "none"},
                                .doc = "L-BFGS's line search: strong_wolfe, or none (the fixed "
                                       "step learning_rate along the direction)."}};
  Setting<int64_t> max_evaluations{{.name = "lbfgs_line_search_evaluations",
                                    .default_value = int64_t{25},
                                    .scope = SettingScope::kOptimizer,
                                    .check = checks::integer_at_least(1),
                                    .doc = "The most loss evaluations of one L-BFGS line search "
                                           "(max_ls); >= 1."}};
  Setting<double> c1{{.name = "wolfe_c1",
                      .default_value = 1e-4,
                      .scope = SettingScope::kOptimizer,
                      .check = checks::interval(0, 1, false, false),
                      .doc = "The line search's sufficient-decrease constant c1; in (0, 1)."}};
  Setting<double> c2{{.name = "wolfe_c2",
                      .default_value = 0.9,
                      .scope = SettingScope::kOptimizer,
                      .check = above_c1,
                      .doc = "The line search's curvature constant c2; in (wolfe_c1, 1)."}};

  static std::string above_c1(const SettingValue& value, const Options& options);
};

const Hyperparameters& hyperparameters() {
  static const Hyperparameters declared;
  return declared;
}

std::string Hyperparameters::above_c1(const SettingValue& value, const Options& options) {
  const double c2 = std::get<double>(value);
  const double c1 = hyperparameters().c1(options);
  if (c2 > c1 && c2 < 1) return "";
  return "a number in (wolfe_c1, 1), here (" + refuse::number(c1) + ", 1)";
}

// `setting` = `value` makes no sense for L-BFGS: std::invalid_argument naming it.
[[noreturn]] void refuse_setting(const char* setting, const std::string& value,
                                 const std::string& why, const std::string& allowed) {
  throw std::invalid_argument("downhill: setting " + std::string(setting) + " = " + value +
                              " is not taken by L-BFGS; " + why + "; allowed: " + allowed);
}

class LbfgsRule final : public UpdateRule {
 public:
  std::string name() const override { return "L-BFGS"; }
  std::vector<std::string> state_names() const override { return {"s", "y"}; }
  at::Tensor initial_state(size_t, const at::Tensor& param, const Options& options) const override {
    auto shape = param.sizes().vec();
    shape.insert(shape.begin(), hyperparameters().history(options));
    return at::zeros(shape, param.options().memory_format(at::MemoryFormat::Contiguous));
  }
  bool needs_hessian_vector_products() const override { return false; }
  bool uses_learning_rate() const override { return true; }
  bool forces_nesterov() const override { return false; }
  bool searches_line() const override { return true; }
  void update(const UpdateContext&, RuleConstants&, const ParamTensors&, const ChainSettings&,
              bool) const override {
    throw std::logic_error("downhill: L-BFGS's update runs through its line search, not a chain");
  }
  // The settings of the update chain have no place in L-BFGS's update: refused by name.
  void check_options(const Options& options, at::ScalarType) const override {
    const auto number = [](double value) { return refuse::number(value); };
    if (options.momentum() > 0) {
      refuse_setting("momentum", number(options.momentum()),
                     "its direction comes from the curvature pairs, not a velocity", "0");
    }
    if (options.nesterov()) {
      refuse_setting("nesterov", "true", "it has no momentum to look ahead with", "false");
    }
    if (options.weight_decay() > 0) {
      refuse_setting("weight_decay", number(options.weight_decay()),
                     "add the penalty to the loss instead, where the line search sees it", "0");
    }
    const std::pair<const char*, double> clipping[] = {
        {"max_gradient_norm", options.max_gradient_norm()},
        {"max_gradient_elem", options.max_gradient_elem()},
        {"max_gradient_global_norm", options.max_gradient_global_norm()}};
    for (const auto& [setting, value] : clipping) {
      if (value > 0) {
        refuse_setting(setting, number(value),
                       "a clipped gradient is not the gradient its curvature pairs and line "
                       "search need",
                       "0");
      }
    }
    if (options.learning_rate_schedule()) {
      refuse_setting("learning_rate_schedule", "a schedule",
                     "the line search chooses each step (learning_rate is its first try)",
                     "no schedule");
    }
    if (options.accumulate() > 1) {
      refuse_setting("accumulate", std::to_string(options.accumulate()),
                     "its line search evaluates one batch several times", "1");
    }
  }
};

// For the settings left unset, torch.optim.LBFGS's defaults: the first step tried is 1, and the
// run stops when no gradient element exceeds 1e-7 (tolerance_grad) or no parameter moves by
// more than 1e-9 (tolerance_change); and one batch of everything (a deterministic problem).
void lbfgs_defaults(Options& options) {
  default_to(options, "learning_rate", 1.0);
  default_to(options, "gradient_tolerance", 1e-7);
  default_to(options, "step_tolerance", 1e-9);
  if (!options.is_set("full_batch")) options.full_batch(true);
}

}  // namespace

LbfgsSettings lbfgs_settings(const Options& options) {
  const auto& h = hyperparameters();
  return {.history = h.history(options),
          .line_search = h.line_search(options) == 0,
          .max_evaluations = h.max_evaluations(options),
          .c1 = h.c1(options),
          .c2 = h.c2(options)};
}

std::unique_ptr<UpdateRule> make_lbfgs_rule() { return std::make_unique<LbfgsRule>(); }
void declare_lbfgs_settings() { hyperparameters(); }
Options with_lbfgs_defaults(Options options) {
  lbfgs_defaults(options);
  return options;
}

}  // namespace downhill::detail
