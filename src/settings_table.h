#pragma once
// The settings table's internal side: how a value reads in the log and in messages, and the
// declaration of the built-in algorithms' hyperparameters. Internal; downhill/settings.h is the
// public side.

#include <downhill/settings.h>

#include <string>
#include <utility>
#include <vector>

namespace downhill::detail {

/// A value as the settings log, error messages and the ranks' comparison show it: numbers as
/// a stream writes them, flags as true/false, a choice by its name, an empty text, schedule
/// or process group as "none" (else "set" / "given"), an unset optional as "unset".
std::string setting_text(const SettingSpec& spec, const SettingValue& value);

/// "a number", "an integer", ...: the type of `value`, for messages.
std::string setting_type_name(const SettingValue& value);

/// The other names of settings (DOWNHILL_CORE_SETTING_ALIASES): each alias and the id of the
/// setting it names.
std::vector<std::pair<std::string, SettingId>> setting_aliases();

/// A setting's name for messages, with its other names: "max_passes (or max_updates)", so that
/// a value set under an alias is recognised.
std::string setting_label(SettingId id);

/// Whether `value` holds the type of `spec`'s default.
bool holds_setting_type(const SettingSpec& spec, const SettingValue& value);

/// Declares every built-in algorithm's hyperparameters (src/algorithms/builtin_settings.cpp).
void declare_builtin_hyperparameters();

}  // namespace downhill::detail
