#include "settings_table.h"

#include <downhill/options.h>

#include <cmath>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "text.h"

namespace downhill {

std::string_view to_string(SettingScope scope) {
  switch (scope) {
    case SettingScope::kGroup:
      return "group";
    case SettingScope::kOptimizer:
      return "optimizer";
    case SettingScope::kLoop:
      return "loop";
    case SettingScope::kRun:
      return "run";
    case SettingScope::kDistributed:
      return "distributed";
  }
  return "?";
}

namespace checks {

namespace {

// A number setting's value (checks are given the setting's own value; an integer is allowed
// where a number is checked).
double number_of(const SettingValue& value) {
  if (const auto* integer = std::get_if<int64_t>(&value)) return static_cast<double>(*integer);
  return std::get<double>(value);
}

}  // namespace

// Each is written so that NaN fails too.
SettingCheck positive() {
  return [](const SettingValue& value, const Options&) -> std::string {
    const double x = number_of(value);
    return x > 0 && !std::isinf(x) ? "" : "a finite number > 0";
  };
}

SettingCheck non_negative() {
  return [](const SettingValue& value, const Options&) -> std::string {
    const double x = number_of(value);
    return x >= 0 && !std::isinf(x) ? "" : "a finite number >= 0";
  };
}

SettingCheck at_least(double low) {
  return [low](const SettingValue& value, const Options&) -> std::string {
    const double x = number_of(value);
    return x >= low && !std::isinf(x) ? "" : "a finite number >= " + detail::format_number(low);
  };
}

SettingCheck interval(double low, double high, bool low_closed, bool high_closed) {
  return [=](const SettingValue& value, const Options&) -> std::string {
    const double x = number_of(value);
    const bool above = low_closed ? x >= low : x > low;
    const bool below = high_closed ? x <= high : x < high;
    if (above && below) return "";
    std::string allowed(low_closed ? "[" : "(");
    allowed += detail::format_number(low);
    allowed += ", ";
    allowed += detail::format_number(high);
    allowed += high_closed ? "]" : ")";
    return allowed;
  };
}

SettingCheck integer_at_least(int64_t low) {
  return [low](const SettingValue& value, const Options&) -> std::string {
    if (const auto* optional = std::get_if<std::optional<int64_t>>(&value)) {
      if (!*optional || **optional >= low) return "";
    } else if (std::get<int64_t>(value) >= low) {
      return "";
    }
    return "an integer >= " + std::to_string(low);
  };
}

}  // namespace checks

namespace {

// resume(true) and resume_required(true) read the checkpoint file, so they need one.
SettingCheck resume_needs_checkpoint() {
  return [](const SettingValue& value, const Options& options) -> std::string {
    return std::get<bool>(value) && options.checkpoint().empty()
               ? "false, or true with checkpoint(path) set (resuming reads that file)"
               : "";
  };
}

// monitor names a validation monitor: whether it is one is known at the first validation.
SettingCheck names_a_monitor() {
  return [](const SettingValue& value, const Options&) -> std::string {
    return std::get<std::string>(value).empty() ? "the name of a validation monitor (\"loss\")"
                                                : "";
  };
}

SettingCheck min_or_max() {
  return [](const SettingValue& value, const Options&) -> std::string {
    const auto& mode = std::get<std::string>(value);
    return mode == "min" || mode == "max" ? "" : "\"min\" or \"max\"";
  };
}

bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  for (const char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

// Whether two defaults are the same: values compared where they can be, functions and
// handles by whether they are set.
bool same_default(const SettingValue& a, const SettingValue& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        const auto& y = std::get<T>(b);
        if constexpr (std::is_same_v<T, Schedule> ||
                      std::is_same_v<T, std::shared_ptr<const ProcessGroup>>) {
          return static_cast<bool>(x) == static_cast<bool>(y);
        } else if constexpr (std::is_same_v<T, double>) {
          return x == y || (std::isnan(x) && std::isnan(y));
        } else {
          return x == y;
        }
      },
      a);
}

struct Table {
  struct Row {
    SettingSpec spec;
    bool builtin = false;  // declared by the library itself
  };

  Table() {
    using namespace checks;
    using enum SettingScope;
#define DOWNHILL_CORE_ROW(Type, name_, initial, scope_, check_, saved_, agreed_, doc_) \
  add(SettingSpec{.name = #name_,                                                      \
                  .default_value = SettingValue(std::in_place_type<Type>, initial),    \
                  .scope = scope_,                                                     \
                  .check = check_,                                                     \
                  .choices = {},                                                       \
                  .saved = saved_,                                                     \
                  .agreed = agreed_,                                                   \
                  .doc = doc_},                                                        \
      true);
    DOWNHILL_CORE_SETTINGS(DOWNHILL_CORE_ROW)
#undef DOWNHILL_CORE_ROW
#define DOWNHILL_CORE_ALIAS(Type, alias, name) add_alias(#alias, detail::core::name);
    DOWNHILL_CORE_SETTING_ALIASES(DOWNHILL_CORE_ALIAS)
#undef DOWNHILL_CORE_ALIAS
  }

  // An alias is found by name as its setting is, so that set()/get() by either name reach the
  // one value; it is no row of its own (settings() and the log list the setting once).
  void add_alias(std::string alias, SettingId id) {
    ids.emplace(alias, id);
    aliases.emplace_back(std::move(alias), id);
  }

  SettingId add(SettingSpec spec, bool builtin) {
    const SettingId id = rows.size();
    ids.emplace(spec.name, id);
    rows.push_back(Row{std::move(spec), builtin});
    return id;
  }

  std::mutex mutex;
  std::deque<Row> rows;  // a deque: references to rows stay valid as more are declared
  std::unordered_map<std::string, SettingId> ids;  // each row's name and each alias
  std::vector<std::pair<std::string, SettingId>> aliases;
  bool declaring_builtins = false;
};

Table& table() {
  static Table instance;
  return instance;
}

// The built-in algorithms' hyperparameters are declared before the table is first read, in
// the order of the list of built-ins, so that every Options lists them alike.
void ensure_builtins() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto& t = table();
    {
      std::lock_guard<std::mutex> lock(t.mutex);
      t.declaring_builtins = true;
    }
    detail::declare_builtin_hyperparameters();
    std::lock_guard<std::mutex> lock(t.mutex);
    t.declaring_builtins = false;
  });
}

}  // namespace

namespace detail {
std::string setting_type_name(const SettingValue& value) {
  switch (value.index()) {
    case 0:
      return "a flag (bool)";
    case 1:
      return "an integer";
    case 2:
      return "a number";
    case 3:
      return "a text";
    case 4:
      return "an integer or unset";
    case 5:
      return "a schedule (a function of the update number)";
    default:
      return "a process group";
  }
}
}  // namespace detail

SettingId declare_setting(SettingSpec spec) {
  if (!valid_name(spec.name)) {
    throw std::invalid_argument("downhill: setting name '" + spec.name +
                                "' is invalid; allowed: lower case letters, digits and '_'");
  }
  if (!spec.choices.empty() && !std::holds_alternative<int64_t>(spec.default_value)) {
    throw std::invalid_argument("downhill: setting " + spec.name +
                                " has choices, so its default must be an integer (an index)");
  }
  auto& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  const auto found = t.ids.find(spec.name);
  if (found == t.ids.end()) return t.add(std::move(spec), t.declaring_builtins);
  const auto& known = t.rows[found->second].spec;
  if (!same_default(known.default_value, spec.default_value) || known.scope != spec.scope ||
      known.choices != spec.choices) {
    throw std::invalid_argument(
        "downhill: setting " + spec.name +
        " is declared twice, differently: " + detail::setting_type_name(known.default_value) +
        " defaulting to " + detail::setting_text(known, known.default_value) + " (" +
        std::string(to_string(known.scope)) + ") and " +
        detail::setting_type_name(spec.default_value) + " defaulting to " +
        detail::setting_text(spec, spec.default_value) + " (" + std::string(to_string(spec.scope)) +
        "); give one of them another name");
  }
  return found->second;
}

std::optional<SettingId> find_setting(std::string_view name) {
  ensure_builtins();
  auto& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  const auto found = t.ids.find(std::string(name));
  if (found == t.ids.end()) return std::nullopt;
  return found->second;
}

const SettingSpec& setting_spec(SettingId id) {
  auto& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  if (id >= t.rows.size()) {
    throw std::out_of_range("downhill: there is no setting " + std::to_string(id) +
                            "; the table has " + std::to_string(t.rows.size()));
  }
  return t.rows[id].spec;
}

std::vector<SettingId> setting_ids() {
  ensure_builtins();
  auto& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  std::vector<SettingId> out;
  out.reserve(t.rows.size());
  constexpr SettingId head_end = detail::core::kLastBeforeHyperparameters + 1;
  for (SettingId id = 0; id < head_end; ++id) out.push_back(id);
  for (SettingId id = detail::core::count; id < t.rows.size(); ++id) {
    if (t.rows[id].builtin) out.push_back(id);
  }
  for (SettingId id = head_end; id < detail::core::count; ++id) out.push_back(id);
  for (SettingId id = detail::core::count; id < t.rows.size(); ++id) {
    if (!t.rows[id].builtin) out.push_back(id);
  }
  return out;
}

namespace detail {

std::string setting_text(const SettingSpec& spec, const SettingValue& value) {
  return std::visit(
      [&](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_same_v<T, int64_t>) {
          if (x >= 0 && static_cast<size_t>(x) < spec.choices.size()) return spec.choices[x];
          return std::to_string(x);
        } else if constexpr (std::is_same_v<T, double>) {
          return format_number(x);
        } else if constexpr (std::is_same_v<T, std::string>) {
          return x.empty() ? "none" : x;
        } else if constexpr (std::is_same_v<T, std::optional<int64_t>>) {
          return x ? std::to_string(*x) : "unset";
        } else if constexpr (std::is_same_v<T, Schedule>) {
          return x ? "set" : "none";
        } else {
          return x ? "given" : "none";
        }
      },
      value);
}

std::vector<std::pair<std::string, SettingId>> setting_aliases() {
  auto& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  return t.aliases;
}

std::string setting_label(SettingId id) {
  std::string label = setting_spec(id).name;
  std::string others;
  for (const auto& [alias, named] : setting_aliases()) {
    if (named == id) others += (others.empty() ? "" : ", ") + alias;
  }
  return others.empty() ? label : label + " (or " + others + ")";
}

bool holds_setting_type(const SettingSpec& spec, const SettingValue& value) {
  return spec.default_value.index() == value.index();
}

}  // namespace detail

// ---- Options: the parts that read the table ----

Options::Options() {
  ensure_builtins();
  auto& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  values_.reserve(t.rows.size());
  for (const auto& row : t.rows) values_.push_back(row.spec.default_value);
  given_.assign(values_.size(), false);
}

const SettingValue& Options::value(SettingId id) const {
  if (id < values_.size()) return values_[id];
  return setting_spec(id).default_value;
}

SettingValue& Options::writable(SettingId id) {
  while (values_.size() <= id) values_.push_back(setting_spec(values_.size()).default_value);
  given_.resize(values_.size(), false);
  given_[id] = true;
  return values_[id];
}

}  // namespace downhill
