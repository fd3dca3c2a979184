#pragma once
// Every setting of an optimizer and of its loop, as chainable setters.

#include <downhill/detail/core_settings.h>
#include <downhill/settings.h>

#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace downhill {

/// How ESGD computes Hessian-vector products (docs/guide.md's mathematics).
enum class HvMethod {
  kRop,   ///< Jacobian of the gradient times r (forward-mode style, via two vector-Jacobian
          ///< products)
  kLop,   ///< the vector-Jacobian product rᵀH
  kGrad,  ///< the gradient of (g · r)
};

/// The name of an HvMethod: "rop", "lop" or "grad".
std::string_view to_string(HvMethod method);

/// Every setting of an optimizer and of its loop, in the LibTorch style:
/// `Options().learning_rate(0.1).momentum(0.9)`. Each setter has a getter of the same name;
/// every setting can also be set and read by name (`set("momentum", 0.9)`,
/// `get<double>("momentum")`), the algorithms' own hyperparameters and those of users' rules
/// included. What each setting means, its default and what it allows are declared once, in
/// the settings table (downhill/settings.h; the settings of no algorithm are listed in
/// downhill/detail/core_settings.h). Values are checked by validate(), which build() calls.
class Options {
 public:
  /// Every setting at its default.
  Options();

  // A setter and a getter for each row of downhill/detail/core_settings.h, e.g.
  // `Options& learning_rate(double)` and `const double& learning_rate() const`.
#define DOWNHILL_CORE_ACCESSORS(Type, name, ...)                 \
  Options& name(Type value) {                                    \
    values_[detail::core::name].emplace<Type>(std::move(value)); \
    given_[detail::core::name] = true;                           \
    return *this;                                                \
  }                                                              \
  const Type& name() const noexcept { return std::get<Type>(values_[detail::core::name]); }
  DOWNHILL_CORE_SETTINGS(DOWNHILL_CORE_ACCESSORS)
#undef DOWNHILL_CORE_ACCESSORS

  // A setter and a getter for each other name of a setting (DOWNHILL_CORE_SETTING_ALIASES in
  // downhill/detail/core_settings.h), which set and read that setting: `max_updates(20)` is
  // `max_passes(20)`, and `max_updates()` is `max_passes()`.
#define DOWNHILL_CORE_ALIAS_ACCESSORS(Type, alias, name)        \
  Options& alias(Type value) { return name(std::move(value)); } \
  const Type& alias() const noexcept { return name(); }
  DOWNHILL_CORE_SETTING_ALIASES(DOWNHILL_CORE_ALIAS_ACCESSORS)
#undef DOWNHILL_CORE_ALIAS_ACCESSORS

  // --- The built-in algorithms' hyperparameters, declared in their files ---
  /// Half-life (in updates) of the running averages of RMSProp, ADADELTA and ESGD; > 0.
  Options& rms_halflife(double value);
  const double& rms_halflife() const noexcept;
  /// ε added to denominators; >= 0.
  Options& rms_regularizer(double value);
  const double& rms_regularizer() const noexcept;
  /// Half-life of Adam's first-moment average; > 0.
  Options& beta1_halflife(double value);
  const double& beta1_halflife() const noexcept;
  /// Half-life of Adam's second-moment average; > 0.
  Options& beta2_halflife(double value);
  const double& beta2_halflife() const noexcept;
  /// RProp's step growth factor when the gradient keeps its sign; >= 1.
  Options& rprop_increase(double value);
  const double& rprop_increase() const noexcept;
  /// RProp's step shrink factor when the gradient flips sign; in (0, 1].
  Options& rprop_decrease(double value);
  const double& rprop_decrease() const noexcept;
  /// RProp's smallest step; >= 0.
  Options& rprop_min_step(double value);
  const double& rprop_min_step() const noexcept;
  /// RProp's largest step; >= rprop_min_step.
  Options& rprop_max_step(double value);
  const double& rprop_max_step() const noexcept;
  /// How ESGD computes Hessian-vector products.
  Options& hv_method(HvMethod method);
  HvMethod hv_method() const noexcept;
  /// Parses "rop", "lop" or "grad" (any case); throws std::invalid_argument otherwise.
  Options& hv_method(std::string_view name);

  /// Adam's β₁ in PyTorch's terms: sets beta1_halflife to ln 2 / −ln β. Throws
  /// std::invalid_argument unless β is in (0, 1).
  Options& beta1(double beta);
  /// β₁ = exp(−ln 2 / beta1_halflife).
  double beta1() const;
  /// Adam's β₂ in PyTorch's terms: sets beta2_halflife to ln 2 / −ln β; β in (0, 1).
  Options& beta2(double beta);
  /// β₂ = exp(−ln 2 / beta2_halflife).
  double beta2() const;

  // --- Any setting by name ---
  /// Sets the setting named `name` (a built-in one or a registered rule's). A number given for
  /// an integer setting must be whole; an integer is taken for a number; a choice (hv_method)
  /// takes its name. Throws std::invalid_argument for an unknown name (naming the closest
  /// known one) or a value of another type; the value itself is checked by validate().
  template <std::same_as<bool> B>  // a template, so that a lambda does not convert to bool
  Options& set(std::string_view name, B value) {
    return set_value(name, SettingValue(static_cast<bool>(value)));
  }
  template <std::integral I>
  requires(!std::same_as<I, bool>) Options& set(std::string_view name, I value) {
    return set_value(name, SettingValue(static_cast<int64_t>(value)));
  }
  template <std::floating_point F>
  Options& set(std::string_view name, F value) {
    return set_value(name, SettingValue(static_cast<double>(value)));
  }
  Options& set(std::string_view name, const char* value);
  Options& set(std::string_view name, std::string value);
  Options& set(std::string_view name, Schedule value);
  /// Sets the setting of `setting`'s handle.
  template <typename T>
  Options& set(const Setting<T>& setting, T value) {
    writable(setting.id()).template emplace<T>(std::move(value));
    return *this;
  }
  /// The value of the setting named `name`, of type T (bool, int64_t, double, std::string,
  /// std::optional<int64_t>, Schedule). Throws std::invalid_argument for an unknown name or
  /// another type.
  template <typename T>
  const T& get(std::string_view name) const {
    const SettingValue& held = value(id_of(name));
    if (!std::holds_alternative<T>(held)) wrong_type(name);
    return std::get<T>(held);
  }
  /// The value of setting `id` (its default unless it was set).
  const SettingValue& value(SettingId id) const;
  /// Whether setting `id` (or the one named `name`) was given a value — by its setter, by
  /// name, or by an algorithm's own defaults (build("adamw")) — rather than left at the
  /// table's default.
  bool is_set(SettingId id) const noexcept { return id < given_.size() && given_[id]; }
  bool is_set(std::string_view name) const { return is_set(id_of(name)); }

  /// Whether the optimizer trains data-parallel: distributed(true) or a process_group.
  bool data_parallel() const noexcept { return distributed() || process_group() != nullptr; }

  /// Every setting as (name, value) text, in the order of the settings table, for logging.
  std::vector<std::pair<std::string, std::string>> settings() const;

  /// Throws std::invalid_argument naming the first setting that makes no sense,
  /// its value and the allowed range.
  void validate() const;

 private:
  Options& set_value(std::string_view name, SettingValue value);
  SettingValue& writable(SettingId id);
  static SettingId id_of(std::string_view name);
  [[noreturn]] static void wrong_type(std::string_view name);

  // One value per declared setting, by id; settings declared after this Options was made
  // (a rule registered later) read their default until set.
  std::vector<SettingValue> values_;
  std::vector<bool> given_;  // by id: set rather than default (is_set)
};

template <typename T>
const T& Setting<T>::operator()(const Options& options) const {
  return std::get<T>(options.value(id_));
}

}  // namespace downhill
