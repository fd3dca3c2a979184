#pragma once
// The settings table: every setting of an optimizer and of its loop is declared once, with its
// name, type, default, check, scope, and whether checkpoints save it and data-parallel ranks
// must agree on it. Validation, parameter groups, checkpoints, change_options, the settings
// log and the ranks' comparison all read the table. A rule declares its own hyperparameters in
// it too (downhill::Setting, below), which are then set per build by name
// (`Options().set("lion_beta1", 0.95)`), validated, logged, changed live, checkpointed and
// compared across ranks like the built-in settings (docs/guide.md, "Settings by name").

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace downhill {

class Options;
class ProcessGroup;  // downhill/distributed.h

/// A learning-rate schedule: the factor f(t) that multiplies the update number t (0 for
/// the first). downhill/schedules.h has the usual ones.
using Schedule = std::function<double(int64_t update)>;

/// A setting's value. The alternative a setting's default holds is its type.
using SettingValue = std::variant<bool, int64_t, double, std::string, std::optional<int64_t>,
                                  Schedule, std::shared_ptr<const ProcessGroup>>;

/// Where a setting belongs, which decides who may change it.
enum class SettingScope {
  kGroup,        ///< shapes one parameter's update: a parameter group may set its own
  kOptimizer,    ///< shapes the update of the whole optimizer (algo, accumulate, ...)
  kLoop,         ///< the loop: validation, stopping, batches
  kRun,          ///< a run's files: checkpoints, resume, history
  kDistributed,  ///< data-parallel training
};

/// "group", "optimizer", "loop", "run" or "distributed".
std::string_view to_string(SettingScope scope);

/// A setting's check: empty when `value` is allowed, else the text of what is allowed (for
/// example "[0, 1)"). It sees the whole options, for a setting bounded by another.
using SettingCheck = std::function<std::string(const SettingValue& value, const Options& options)>;

/// Ready-made checks for number and integer settings. A NaN never passes.
namespace checks {
/// A finite number > 0.
SettingCheck positive();
/// A finite number >= 0.
SettingCheck non_negative();
/// A finite number >= `low`.
SettingCheck at_least(double low);
/// A number in an interval: `interval(0, 1, true, false)` is [0, 1).
SettingCheck interval(double low, double high, bool low_closed, bool high_closed);
/// An integer >= `low` (an unset optional integer passes).
SettingCheck integer_at_least(int64_t low);
}  // namespace checks

/// The declaration of one setting: one row of the table.
struct SettingSpec {
  std::string name = {};
  /// The default; the alternative it holds is the setting's type.
  SettingValue default_value = {};
  SettingScope scope = SettingScope::kGroup;
  /// Empty: any value of the type is allowed.
  SettingCheck check = {};
  /// For an integer setting whose values have names (hv_method: "rop", "lop", "grad"): the
  /// names, indexed by value. It is then set by name and shown by name.
  std::vector<std::string> choices = {};
  /// Whether a checkpoint saves its value (numbers, integers and flags only), so that a change
  /// made while training (change_options, reduce on plateau) survives a resume.
  bool saved = true;
  /// Whether data-parallel ranks must have the same value (checked when they build).
  bool agreed = true;
  /// What it means, for the documentation and the Python keywords.
  std::string doc = {};
};

/// A setting's index in the table.
using SettingId = size_t;

/// Declares a setting and returns its id. Declaring the same name again with the same type,
/// default, scope and choices returns the same id; otherwise std::invalid_argument. Names are
/// lower case letters, digits and '_'.
SettingId declare_setting(SettingSpec spec);

/// The id of the setting named `name` (exactly), if one is declared; another name of a setting
/// (`max_updates`, the seed's name for `max_passes`) gives that setting's id.
std::optional<SettingId> find_setting(std::string_view name);

/// The declaration of setting `id`.
const SettingSpec& setting_spec(SettingId id);

/// Every declared setting, in the order Options::settings() lists them: the built-in ones
/// (the algorithms' hyperparameters after the clipping settings), then those declared by
/// users' rules, in the order they were declared.
std::vector<SettingId> setting_ids();

/// A typed handle on one setting: making it declares the setting (see declare_setting), and
/// it reads the setting's value from an Options in constant time. A rule keeps its own
/// hyperparameters in handles:
///
///   const downhill::Setting<double> kLionBeta1({.name = "lion_beta1",
///                                               .default_value = 0.9,
///                                               .check = downhill::checks::interval(0, 1,
///                                                                                   false, false),
///                                               .doc = "Lion's weight of m in the update"});
///   ... kLionBeta1(context.options()) ...
///
/// T is bool, int64_t, double, std::string or std::optional<int64_t>, the alternative of the
/// spec's default.
template <typename T>
class Setting {
 public:
  explicit Setting(SettingSpec spec) : id_(declare_setting(std::move(spec))) {}
  SettingId id() const noexcept { return id_; }
  const std::string& name() const { return setting_spec(id_).name; }
  /// The value in `options` (the default unless it was set); defined in downhill/options.h.
  const T& operator()(const Options& options) const;

 private:
  SettingId id_;
};

}  // namespace downhill
