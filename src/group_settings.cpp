#include "group_settings.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string_view>

#include "text.h"

namespace downhill::detail {

namespace {

bool is_group_setting(const std::string& name) {
  const auto id = find_setting(name);
  return id && setting_spec(*id).scope == SettingScope::kGroup;
}

// The settings a checkpoint saves: those the table marks saved, of a type a number holds. Read
// afresh each time: a rule registered later adds its own.
std::vector<SettingId> saved_ids() {
  std::vector<SettingId> out;
  for (const SettingId id : setting_ids()) {
    const auto& spec = setting_spec(id);
    const auto& value = spec.default_value;
    if (spec.saved &&
        (std::holds_alternative<bool>(value) || std::holds_alternative<int64_t>(value) ||
         std::holds_alternative<double>(value))) {
      out.push_back(id);
    }
  }
  return out;
}

double as_number(const SettingValue& value) {
  if (const auto* flag = std::get_if<bool>(&value)) return *flag ? 1.0 : 0.0;
  if (const auto* integer = std::get_if<int64_t>(&value)) return static_cast<double>(*integer);
  return std::get<double>(value);
}

}  // namespace

void check_same_loop_settings(const Options& base, const Options& group_options, size_t group) {
  const auto before = base.settings();
  const auto after = group_options.settings();
  for (size_t i = 0; i < before.size(); ++i) {
    if (before[i].second == after[i].second || is_group_setting(before[i].first)) continue;
    std::string allowed;
    for (const SettingId id : setting_ids()) {
      const auto& spec = setting_spec(id);
      if (spec.scope == SettingScope::kGroup) allowed += (allowed.empty() ? "" : ", ") + spec.name;
    }
    throw std::invalid_argument(
        "downhill: parameter group " + std::to_string(group) + " changes " + before[i].first +
        " (" + before[i].second + " to " + after[i].second +
        "), a setting of the whole optimizer; a group may change: " + allowed);
  }
}

std::vector<Options> resolve_group_options(const Params& params, const Options& base) {
  std::vector<Options> out(params.group_count(), base);
  for (size_t g = 1; g < out.size(); ++g) {
    const auto& change = params.group_settings(g);
    if (params.is_frozen(g) || !change) continue;
    change(out[g]);
    try {
      out[g].validate();
    } catch (const std::invalid_argument& error) {
      throw std::invalid_argument(
          "downhill: parameter group " + std::to_string(g) + ": " +
          std::string(error.what()).substr(std::string("downhill: ").size()));
    }
    check_same_loop_settings(base, out[g], g);
  }
  return out;
}

void check_live_change(const Options& before, const Options& after, const std::string& where,
                       const std::string& algorithm) {
  try {
    after.validate();
  } catch (const std::invalid_argument& error) {
    throw std::invalid_argument("downhill: change_options" + where + ": " +
                                std::string(error.what()).substr(std::string("downhill: ").size()));
  }
  // build() takes the algorithm as an argument, so options().algo() may name another: only
  // a change to an algorithm other than the optimizer's is refused.
  if (after.algo() != before.algo() && to_lower(after.algo()) != to_lower(algorithm)) {
    throw std::invalid_argument("downhill: change_options" + where +
                                ": algo cannot change in a live optimizer (it is " + algorithm +
                                "; got " + after.algo() + "); build another");
  }
  if ((before.momentum() > 0) != (after.momentum() > 0)) {
    throw std::invalid_argument(
        "downhill: change_options" + where + ": momentum cannot be turned " +
        (after.momentum() > 0 ? "on" : "off") +
        " in a live optimizer (its velocity is state); allowed: " +
        (before.momentum() > 0 ? "another value in (0, 1)" : "0, as it is"));
  }
}

std::vector<std::string> saved_setting_names() {
  std::vector<std::string> out;
  for (const SettingId id : saved_ids()) out.push_back(setting_spec(id).name);
  return out;
}

at::Tensor settings_values(const Options& options) {
  const auto ids = saved_ids();
  auto values = at::empty({static_cast<int64_t>(ids.size())}, at::kDouble);
  auto* data = values.data_ptr<double>();
  for (size_t i = 0; i < ids.size(); ++i) data[i] = as_number(options.value(ids[i]));
  return values;
}

Options with_saved_settings(Options options, const std::vector<std::string>& names,
                            const at::Tensor& values) {
  const auto contiguous = values.to(at::kDouble).contiguous();
  const auto* data = contiguous.data_ptr<double>();
  const auto saved = saved_ids();
  for (size_t i = 0; i < names.size() && static_cast<int64_t>(i) < contiguous.numel(); ++i) {
    const auto id = find_setting(names[i]);
    if (!id || std::find(saved.begin(), saved.end(), *id) == saved.end()) {
      continue;  // a setting this version does not know, or does not save
    }
    const auto& held = setting_spec(*id).default_value;
    if (std::holds_alternative<bool>(held)) {
      options.set(names[i], data[i] != 0);
    } else if (std::holds_alternative<int64_t>(held)) {
      // Beyond 2^53 a double holds no exact integer (and the cast would be undefined).
      if (!(std::abs(data[i]) <= 9007199254740992.0) || data[i] != std::floor(data[i])) {
        throw std::invalid_argument(names[i] + " = " + format_number(data[i]) +
                                    " is not an integer setting's value");
      }
      options.set(names[i], static_cast<int64_t>(data[i]));
    } else {
      options.set(names[i], data[i]);
    }
  }
  return options;
}

}  // namespace downhill::detail
