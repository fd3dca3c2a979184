#pragma once
// Parameter groups' settings: resolving each group's options from the optimizer's, the
// checks a change must pass, and the update settings as a checkpoint saves them. Internal.

#include <ATen/ATen.h>
#include <downhill/options.h>
#include <downhill/params.h>

#include <string>
#include <vector>

namespace downhill::detail {

/// One Options per group: group 0 is `base`; group g applies its settings change to a copy
/// of `base` (frozen groups keep `base`). Throws std::invalid_argument naming the group and
/// the setting when a group's result is invalid or changes a loop setting.
std::vector<Options> resolve_group_options(const Params& params, const Options& base);

/// Throws std::invalid_argument, naming `where` and the setting, unless `after` is a valid
/// change of `before` for a live optimizer: valid, the same algorithm, momentum neither
/// turned on nor off. `algorithm` is the optimizer's name.
void check_live_change(const Options& before, const Options& after, const std::string& where,
                       const std::string& algorithm);

/// Throws std::invalid_argument naming the setting and `group` when `group_options` differs
/// from `base` in a setting that belongs to the whole optimizer (a loop setting).
void check_same_loop_settings(const Options& base, const Options& group_options, size_t group);

/// The names of the update settings a checkpoint saves, in the order of settings_values().
std::vector<std::string> saved_setting_names();
/// The update settings of `options` as a 1-D double tensor.
at::Tensor settings_values(const Options& options);
/// `options` with the saved update settings `values` (named by `names`) put back; names a
/// checkpoint has that this version does not know are ignored.
Options with_saved_settings(Options options, const std::vector<std::string>& names,
                            const at::Tensor& values);

}  // namespace downhill::detail
