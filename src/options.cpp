#include <downhill/options.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "settings_table.h"
#include "text.h"

namespace downhill {

std::string_view to_string(HvMethod method) {
  switch (method) {
    case HvMethod::kRop:
      return "rop";
    case HvMethod::kLop:
      return "lop";
    case HvMethod::kGrad:
      return "grad";
  }
  return "?";
}

namespace {

// A built-in hyperparameter's id, looked up once (the table declares every built-in one
// before it is first read).
SettingId builtin_id(const char* name) {
  const auto id = find_setting(name);
  if (!id) throw std::logic_error(std::string("downhill: built-in setting ") + name + " missing");
  return *id;
}

// `value` converted to the type of `spec`, where the conversion loses nothing.
std::optional<SettingValue> converted(const SettingSpec& spec, const SettingValue& value) {
  if (detail::holds_setting_type(spec, value)) return value;
  const auto* integer = std::get_if<int64_t>(&value);
  const auto* number = std::get_if<double>(&value);
  const auto* text = std::get_if<std::string>(&value);
  const auto& target = spec.default_value;
  if (std::holds_alternative<double>(target) && integer) {
    return SettingValue(static_cast<double>(*integer));
  }
  if (std::holds_alternative<int64_t>(target) ||
      std::holds_alternative<std::optional<int64_t>>(target)) {
    std::optional<int64_t> whole;
    if (integer) whole = *integer;
    if (number && std::trunc(*number) == *number && std::abs(*number) < 9.2e18) {
      whole = static_cast<int64_t>(*number);
    }
    if (text && !spec.choices.empty()) {
      const auto lower = detail::to_lower(*text);
      const auto found = std::find(spec.choices.begin(), spec.choices.end(), lower);
      if (found == spec.choices.end()) return std::nullopt;
      whole = found - spec.choices.begin();
    }
    if (!whole) return std::nullopt;
    if (std::holds_alternative<int64_t>(target)) return SettingValue(*whole);
    return SettingValue(std::optional<int64_t>(*whole));
  }
  return std::nullopt;
}

std::string choices_text(const SettingSpec& spec) {
  std::string out;
  for (const auto& choice : spec.choices) out += (out.empty() ? "" : ", ") + choice;
  return out;
}

}  // namespace

SettingId Options::id_of(std::string_view name) {
  if (const auto id = find_setting(name)) return *id;
  std::vector<std::string> names;
  std::string known;
  for (const SettingId id : setting_ids()) names.push_back(setting_spec(id).name);
  for (const auto& [alias, id] : detail::setting_aliases()) names.push_back(alias);
  for (const auto& candidate : names) known += (known.empty() ? "" : ", ") + candidate;
  const std::string closest = detail::closest_name(name, names);
  throw std::invalid_argument("downhill: unknown setting '" + std::string(name) + "'" +
                              (closest.empty() ? "" : "; did you mean '" + closest + "'?") +
                              " (a rule's own settings are known once it is registered); known "
                              "settings: " +
                              known);
}

void Options::wrong_type(std::string_view name) {
  const SettingId id = id_of(name);
  const auto& spec = setting_spec(id);
  throw std::invalid_argument("downhill: setting " + detail::setting_label(id) + " holds " +
                              detail::setting_type_name(spec.default_value) +
                              ", not the type asked for");
}

Options& Options::set_value(std::string_view name, SettingValue value) {
  const SettingId id = id_of(name);
  const auto& spec = setting_spec(id);
  auto fitted = converted(spec, value);
  if (!fitted) {
    const std::string allowed = spec.choices.empty() ? detail::setting_type_name(spec.default_value)
                                                     : "one of " + choices_text(spec);
    throw std::invalid_argument("downhill: setting " + detail::setting_label(id) + " cannot take " +
                                (std::holds_alternative<std::string>(value)
                                     ? "'" + std::get<std::string>(value) + "'"
                                     : detail::setting_text(spec, value)) +
                                "; allowed: " + allowed);
  }
  writable(id) = std::move(*fitted);
  return *this;
}

Options& Options::set(std::string_view name, const char* value) {
  return set_value(name, SettingValue(std::string(value)));
}
Options& Options::set(std::string_view name, std::string value) {
  return set_value(name, SettingValue(std::move(value)));
}
Options& Options::set(std::string_view name, Schedule value) {
  return set_value(name, SettingValue(std::move(value)));
}

// The typed setters and getters of the built-in algorithms' hyperparameters, which are declared
// in the algorithms' files.
#define DOWNHILL_HYPERPARAMETER_ACCESSORS(name)    \
  Options& Options::name(double value) {           \
    static const SettingId id = builtin_id(#name); \
    writable(id).emplace<double>(value);           \
    return *this;                                  \
  }                                                \
  const double& Options::name() const noexcept {   \
    static const SettingId id = builtin_id(#name); \
    return std::get<double>(this->value(id));      \
  }
DOWNHILL_HYPERPARAMETER_ACCESSORS(rms_halflife)
DOWNHILL_HYPERPARAMETER_ACCESSORS(rms_regularizer)
DOWNHILL_HYPERPARAMETER_ACCESSORS(beta1_halflife)
DOWNHILL_HYPERPARAMETER_ACCESSORS(beta2_halflife)
DOWNHILL_HYPERPARAMETER_ACCESSORS(rprop_increase)
DOWNHILL_HYPERPARAMETER_ACCESSORS(rprop_decrease)
DOWNHILL_HYPERPARAMETER_ACCESSORS(rprop_min_step)
DOWNHILL_HYPERPARAMETER_ACCESSORS(rprop_max_step)
#undef DOWNHILL_HYPERPARAMETER_ACCESSORS

namespace {
SettingId hv_method_id() {
  static const SettingId id = builtin_id("hv_method");
  return id;
}
}  // namespace

Options& Options::hv_method(HvMethod method) {
  writable(hv_method_id()).emplace<int64_t>(static_cast<int64_t>(method));
  return *this;
}

HvMethod Options::hv_method() const noexcept {
  return static_cast<HvMethod>(std::get<int64_t>(value(hv_method_id())));
}

Options& Options::hv_method(std::string_view name) {
  const std::string lower = detail::to_lower(name);
  for (HvMethod m : {HvMethod::kRop, HvMethod::kLop, HvMethod::kGrad}) {
    if (lower == to_string(m)) return hv_method(m);
  }
  throw std::invalid_argument("downhill: setting hv_method = '" + std::string(name) +
                              "' is invalid; allowed: rop, lop, grad");
}

namespace {

// ln 2 / −ln β, the half-life of an average that keeps β of the old value.
double halflife_of(const char* setting, double beta) {
  if (!(beta > 0 && beta < 1)) {
    throw std::invalid_argument("downhill: setting " + std::string(setting) + " = " +
                                detail::format_number(beta) + " is invalid; allowed: (0, 1)");
  }
  return std::log(2.0) / -std::log(beta);
}

}  // namespace

Options& Options::beta1(double beta) { return beta1_halflife(halflife_of("beta1", beta)); }
Options& Options::beta2(double beta) { return beta2_halflife(halflife_of("beta2", beta)); }
double Options::beta1() const { return std::exp(-std::log(2.0) / beta1_halflife()); }
double Options::beta2() const { return std::exp(-std::log(2.0) / beta2_halflife()); }

void Options::validate() const {
  for (const SettingId id : setting_ids()) {
    const auto& spec = setting_spec(id);
    if (!spec.check) continue;
    const auto& held = value(id);
    const std::string allowed = spec.check(held, *this);
    if (allowed.empty()) continue;
    throw std::invalid_argument("downhill: setting " + detail::setting_label(id) + " = " +
                                detail::setting_text(spec, held) +
                                " is invalid; allowed: " + allowed);
  }
}

std::vector<std::pair<std::string, std::string>> Options::settings() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const SettingId id : setting_ids()) {
    const auto& spec = setting_spec(id);
    out.emplace_back(spec.name, detail::setting_text(spec, value(id)));
  }
  return out;
}

}  // namespace downhill
