#include "group_settings.h"

#include <algorithm>
#include <array>
#include <functional>
#include <stdexcept>
#include <string_view>

#include "text.h"

namespace downhill::detail {

namespace {

// The settings a group may change: everything that shapes one parameter's update.
constexpr std::array<std::string_view, 16> kGroupSettings = {"learning_rate",
                                                             "momentum",
                                                             "nesterov",
                                                             "max_gradient_norm",
                                                             "max_gradient_elem",
                                                             "rms_halflife",
                                                             "rms_regularizer",
                                                             "beta1_halflife",
                                                             "beta2_halflife",
                                                             "rprop_increase",
                                                             "rprop_decrease",
                                                             "rprop_min_step",
                                                             "rprop_max_step",
                                                             "weight_decay",
                                                             "learning_rate_schedule",
                                                             "fused"};

bool is_group_setting(std::string_view name) {
  return std::find(kGroupSettings.begin(), kGroupSettings.end(), name) != kGroupSettings.end();
}

// A saved update setting: how to read it from and write it into Options.
struct SavedSetting {
  const char* name;
  std::function<double(const Options&)> get;
  std::function<void(Options&, double)> set;
};

#define DOWNHILL_SAVED(name)                                                                     \
  SavedSetting {                                                                                 \
#name,                                                                                       \
        [](const Options& o) { return static_cast<double>(o.name()); },                          \
                                                                     [](Options & o,             \
                                                                        double v) { o.name(v); } \
  }

const std::vector<SavedSetting>& saved_settings() {
  static const std::vector<SavedSetting> settings = {
      DOWNHILL_SAVED(learning_rate),
      DOWNHILL_SAVED(momentum),
      SavedSetting{"nesterov", [](const Options& o) { return o.nesterov() ? 1.0 : 0.0; },
                   [](Options& o, double v) { o.nesterov(v != 0); }},
      DOWNHILL_SAVED(max_gradient_norm),
      DOWNHILL_SAVED(max_gradient_elem),
      DOWNHILL_SAVED(rms_halflife),
      DOWNHILL_SAVED(rms_regularizer),
      DOWNHILL_SAVED(beta1_halflife),
      DOWNHILL_SAVED(beta2_halflife),
      DOWNHILL_SAVED(rprop_increase),
      DOWNHILL_SAVED(rprop_decrease),
      DOWNHILL_SAVED(rprop_min_step),
      DOWNHILL_SAVED(rprop_max_step),
      DOWNHILL_SAVED(weight_decay),
      DOWNHILL_SAVED(max_gradient_global_norm),
  };
  return settings;
}

#undef DOWNHILL_SAVED

}  // namespace

void check_same_loop_settings(const Options& base, const Options& group_options, size_t group) {
  const auto before = base.settings();
  const auto after = group_options.settings();
  for (size_t i = 0; i < before.size(); ++i) {
    if (before[i].second == after[i].second || is_group_setting(before[i].first)) continue;
    std::string allowed;
    for (auto name : kGroupSettings) allowed += (allowed.empty() ? "" : ", ") + std::string(name);
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

const std::vector<std::string>& saved_setting_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& setting : saved_settings()) out.emplace_back(setting.name);
    return out;
  }();
  return names;
}

at::Tensor settings_values(const Options& options) {
  const auto& settings = saved_settings();
  auto values = at::empty({static_cast<int64_t>(settings.size())}, at::kDouble);
  auto* data = values.data_ptr<double>();
  for (size_t i = 0; i < settings.size(); ++i) data[i] = settings[i].get(options);
  return values;
}

Options with_saved_settings(Options options, const std::vector<std::string>& names,
                            const at::Tensor& values) {
  const auto& settings = saved_settings();
  const auto contiguous = values.to(at::kDouble).contiguous();
  const auto* data = contiguous.data_ptr<double>();
  for (size_t i = 0; i < names.size() && static_cast<int64_t>(i) < contiguous.numel(); ++i) {
    for (const auto& setting : settings) {
      if (names[i] == setting.name) setting.set(options, data[i]);
    }
  }
  return options;
}

}  // namespace downhill::detail
