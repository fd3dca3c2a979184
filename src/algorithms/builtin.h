#pragma once
// The built-in algorithms: one list, which the registry and the tests read. A new
// algorithm is its own file under src/algorithms/ and one name added here.

#include <downhill/rule.h>

#include <cmath>
#include <limits>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

/// X(id) for every built-in algorithm, in the order tests and docs list them.
#define DOWNHILL_BUILTIN_ALGORITHMS(X) \
  X(sgd) X(nag) X(rprop) X(rmsprop) X(adagrad) X(adadelta) X(esgd) X(adam) X(adamw) X(lion)

/// X(id) for every built-in algorithm whose update searches along a line (UpdateRule::
/// searches_line): built by name like the others, but not listed by builtin_algorithm_names(),
/// the algorithms of the update chain.
#define DOWNHILL_SEARCH_ALGORITHMS(X) X(lbfgs)

namespace downhill::detail {

#define DOWNHILL_DECLARE_BUILTIN(id)              \
  std::unique_ptr<UpdateRule> make_##id##_rule(); \
  void declare_##id##_settings();                 \
  Options with_##id##_defaults(Options options);
DOWNHILL_BUILTIN_ALGORITHMS(DOWNHILL_DECLARE_BUILTIN)
DOWNHILL_SEARCH_ALGORITHMS(DOWNHILL_DECLARE_BUILTIN)
#undef DOWNHILL_DECLARE_BUILTIN

/// The hyperparameters several built-in rules share (RMSProp, ADAGRAD, ADADELTA, ESGD, Adam),
/// declared once, in builtin_settings.cpp. A rule's own are declared in its file.
struct SharedHyperparameters {
  Setting<double> rms_halflife;
  Setting<double> rms_regularizer;
};
const SharedHyperparameters& shared_hyperparameters();

/// Settings the built-in rules refuse when their arithmetic degenerates (a rule's static
/// check_options, which the engine calls for each dtype of the parameters).
namespace refuse {

/// "float32" or "float64".
inline std::string dtype_name(at::ScalarType dtype) {
  return dtype == at::kFloat ? "float32" : "float64";
}

inline std::string number(double value) {
  std::ostringstream text;
  text << value;
  return text.str();
}

[[noreturn]] inline void setting(const char* rule, const char* name, double value,
                                 const std::string& why, const std::string& allowed) {
  throw std::invalid_argument("downhill: setting " + std::string(name) + " = " + number(value) +
                              " is invalid for " + rule + "; " + why + "; allowed: " + allowed);
}

/// `value` must stay finite once rounded to the parameters' dtype (1e39 is infinite in
/// float32).
inline void unless_finite_in(const char* rule, const char* name, double value,
                             at::ScalarType dtype) {
  if (dtype != at::kFloat || std::isfinite(static_cast<float>(value))) return;
  setting(rule, name, value, "it is infinite once rounded to float32, the parameters' dtype",
          "at most " + number(std::numeric_limits<float>::max()) + " for float32 parameters");
}

/// For a rule that divides by the rms_regularizer ε: ε must be a normal number of the
/// parameters' dtype (not 0, and not a denormal that flush-to-zero arithmetic makes 0).
inline void unless_regularizer_normal(const char* rule, const Options& options,
                                      at::ScalarType dtype) {
  const double eps = options.rms_regularizer();
  const double smallest =
      dtype == at::kFloat ? std::numeric_limits<float>::min() : std::numeric_limits<double>::min();
  if (eps < smallest) {
    // Appended piece by piece: GCC 12 warns falsely (-Warray-bounds) on the nested concatenation.
    std::string why = "the update divides by it, and it is ";
    if (eps == 0) {
      why += "0";
    } else {
      why += "below the smallest normal ";
      why += dtype_name(dtype);
    }
    setting(rule, "rms_regularizer", eps, why,
            "a number >= " + number(smallest) + " for " + dtype_name(dtype) + " parameters");
  }
  unless_finite_in(rule, "rms_regularizer", eps, dtype);
}

/// For a rule that divides by 1 − βᵗ (a bias correction): β = exp(−ln 2 / halflife) must be
/// below 1 in double precision.
inline void unless_weight_below_one(const char* rule, const char* name, double halflife) {
  if (ewma_weight(halflife) < 1.0) return;
  setting(rule, name, halflife,
          "its weight exp(-ln 2 / halflife) rounds to 1 in double precision, so the bias "
          "correction 1 - weight^t is 0 and the update divides by it",
          "a half-life below 1.2e16 updates");
}

}  // namespace refuse

/// Defines make_<id>_rule(), declare_<id>_settings() (its hyperparameters into the settings
/// table) and with_<id>_defaults() (the options as given) for the rule template `Rule`, in the
/// rule's file.
#define DOWNHILL_DEFINE_BUILTIN(id, Rule) \
  DOWNHILL_DEFINE_BUILTIN_WITH_DEFAULTS(id, Rule, [](Options&) {})

/// As DOWNHILL_DEFINE_BUILTIN, for an algorithm with defaults of its own: `defaults`, a
/// callable on Options&, gives the settings the user left unset the algorithm's values
/// (with default_to), as build("adamw") takes PyTorch's AdamW defaults.
#define DOWNHILL_DEFINE_BUILTIN_WITH_DEFAULTS(id, Rule, defaults)                                 \
  std::unique_ptr<UpdateRule> make_##id##_rule() { return std::make_unique<RuleRunner<Rule>>(); } \
  void declare_##id##_settings() { declare_rule_settings<Rule>(); }                               \
  Options with_##id##_defaults(Options options) {                                                 \
    (defaults)(options);                                                                          \
    return options;                                                                               \
  }

/// `options` with the defaults of the built-in algorithm options.algo() names (as its factory
/// gives them; unchanged for another algorithm), for what is decided before the optimizer is
/// built (minimize() wrapping the data).
Options with_algorithm_defaults(Options options);

/// Sets `name` to `value` unless the options were given a value for it.
inline void default_to(Options& options, std::string_view name, double value) {
  if (!options.is_set(name)) options.set(name, value);
}

}  // namespace downhill::detail
