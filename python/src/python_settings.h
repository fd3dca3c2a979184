#pragma once
// Settings from Python: keyword values converted to the settings table's types, and the table
// itself for the package's keyword lists and documentation.

#include <downhill/options.h>
#include <downhill/params.h>
#include <pybind11/pybind11.h>

#include <string>

namespace downhill::python {

namespace py = pybind11;

/// Sets the setting `name` of `options` to the Python value `value`: a bool, int, float or str
/// of the setting's type (an int for a number, a whole float for an integer), None for an
/// optional integer left unset or no schedule, a callable for a schedule. Throws TypeError
/// naming the setting and the type it takes.
void set_setting(Options& options, const std::string& name, py::handle value);

/// The value of setting `name` as Python has it.
py::object get_setting(const Options& options, const std::string& name);

/// The change of `settings` (a dict of name → value), checked and converted now, to apply later.
GroupSettings settings_change(const py::dict& settings);

/// Binds Options and the settings table.
void bind_settings(py::module_& module);

}  // namespace downhill::python
