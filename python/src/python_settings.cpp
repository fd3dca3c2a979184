#include "python_settings.h"

#include <downhill/settings.h>
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <utility>
#include <variant>
#include <vector>

#include "algorithms/builtin.h"
#include "python_errors.h"
#include "settings_table.h"
#include "text.h"

namespace downhill::python {

namespace {

std::vector<std::string> setting_names() {
  std::vector<std::string> names;
  for (SettingId id : setting_ids()) names.push_back(setting_spec(id).name);
  for (const auto& [alias, id] : detail::setting_aliases()) names.push_back(alias);
  return names;
}

SettingId id_of(const std::string& name) {
  if (const auto id = find_setting(name)) return *id;
  std::string message = "unknown setting '" + name + "'";
  const std::string closest = detail::closest_name(name, setting_names());
  if (!closest.empty()) message += "; did you mean '" + closest + "'?";
  throw py::type_error(message);
}

// "number", "integer", ...: what a setting of `spec` takes, for TypeError's message.
std::string type_word(const SettingSpec& spec) {
  if (!spec.choices.empty()) return "the name of a choice";
  return std::visit(
      [](const auto& value) -> std::string {
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, bool>) return "a bool";
        if constexpr (std::is_same_v<T, int64_t>) return "an int";
        if constexpr (std::is_same_v<T, double>) return "a number (float or int)";
        if constexpr (std::is_same_v<T, std::string>) return "a str";
        if constexpr (std::is_same_v<T, std::optional<int64_t>>) return "an int or None";
        if constexpr (std::is_same_v<T, Schedule>) return "a callable f(update) -> float, or None";
        return "a c10d process group (not available from Python: use distributed=True)";
      },
      spec.default_value);
}

[[noreturn]] void wrong_type(const SettingSpec& spec, py::handle value) {
  throw py::type_error("setting '" + spec.name + "' takes " + type_word(spec) + ", not " +
                       std::string(py::str(py::type::of(value).attr("__name__"))) + " (" +
                       std::string(py::repr(value)) + ")");
}

bool is_bool(py::handle value) {
  return PyBool_Check(value.ptr()) || (py::hasattr(value, "dtype") && py::hasattr(value, "item") &&
                                       std::string(py::str(value.attr("dtype"))) == "bool");
}

// An int-like (int, numpy integer, a 0-d integer tensor), not a bool.
bool is_integer(py::handle value) { return !is_bool(value) && PyIndex_Check(value.ptr()) != 0; }

bool is_number(py::handle value) {
  return !is_bool(value) && (is_integer(value) || PyFloat_Check(value.ptr()) ||
                             (py::hasattr(value, "__float__") && !py::isinstance<py::str>(value)));
}

int64_t as_int(py::handle value) {
  auto index = py::reinterpret_steal<py::object>(PyNumber_Index(value.ptr()));
  if (!index) throw py::error_already_set();
  return index.cast<int64_t>();
}

double as_double(py::handle value) {
  const double number = PyFloat_AsDouble(value.ptr());
  if (number == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  return number;
}

}  // namespace

void set_setting(Options& options, const std::string& name, py::handle value) {
  const SettingId id = id_of(name);
  const SettingSpec& spec = setting_spec(id);
  if (!spec.choices.empty()) {  // an integer whose values have names: set by its name
    if (!py::isinstance<py::str>(value)) wrong_type(spec, value);
    options.set(name, value.cast<std::string>());
    return;
  }
  std::visit(
      [&](const auto& default_value) {
        using T = std::decay_t<decltype(default_value)>;
        if constexpr (std::is_same_v<T, bool>) {
          if (!is_bool(value)) wrong_type(spec, value);
          options.set(name, PyObject_IsTrue(value.ptr()) == 1);
        } else if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, double>) {
          if (is_integer(value)) {
            options.set(name, as_int(value));
          } else if (is_number(value)) {
            options.set(name, as_double(value));
          } else {
            wrong_type(spec, value);
          }
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (!py::isinstance<py::str>(value)) {
            // A path given as a pathlib.Path is a path too.
            if (!py::hasattr(value, "__fspath__")) wrong_type(spec, value);
            options.set(name, py::str(value.attr("__fspath__")()).cast<std::string>());
            return;
          }
          options.set(name, value.cast<std::string>());
        } else if constexpr (std::is_same_v<T, std::optional<int64_t>>) {
          if (value.is_none()) {
            options.set(Setting<std::optional<int64_t>>(spec), std::optional<int64_t>());
          } else if (is_integer(value)) {
            options.set(name, as_int(value));
          } else if (is_number(value)) {
            options.set(name, as_double(value));
          } else {
            wrong_type(spec, value);
          }
        } else if constexpr (std::is_same_v<T, Schedule>) {
          if (value.is_none()) {
            options.set(name, Schedule());
            return;
          }
          if (!PyCallable_Check(value.ptr())) wrong_type(spec, value);
          // The schedule holds the callable; it is called, and let go, with the GIL held.
          auto function = shared_python_object(py::reinterpret_borrow<py::object>(value));
          options.set(name, Schedule([function](int64_t update) {
                        py::gil_scoped_acquire gil;
                        const py::object factor = call_python(*function, update);
                        const double number = PyFloat_AsDouble(factor.ptr());
                        if (number == -1.0 && PyErr_Occurred()) {
                          throw_kept(py::error_already_set());
                        }
                        return number;
                      }));
        } else {
          wrong_type(spec, value);
        }
      },
      spec.default_value);
}

py::object get_setting(const Options& options, const std::string& name) {
  const SettingId id = id_of(name);
  const SettingSpec& spec = setting_spec(id);
  const SettingValue& value = options.value(id);
  if (!spec.choices.empty()) return py::str(detail::setting_text(spec, value));
  return std::visit(
      [](const auto& held) -> py::object {
        using T = std::decay_t<decltype(held)>;
        if constexpr (std::is_same_v<T, Schedule>) {
          if (!held) return py::none();
          return py::cpp_function([held](int64_t update) { return held(update); });
        } else if constexpr (std::is_same_v<T, std::shared_ptr<const ProcessGroup>>) {
          return held ? py::object(py::str("given")) : py::object(py::none());
        } else if constexpr (std::is_same_v<T, std::optional<int64_t>>) {
          return held ? py::object(py::int_(*held)) : py::object(py::none());
        } else {
          return py::cast(held);
        }
      },
      value);
}

GroupSettings settings_change(const py::dict& settings) {
  // Each value is set on a scratch Options now, so that a wrong name or type is raised where
  // the keyword was given; the change then copies the converted values.
  Options converted;
  std::vector<SettingId> ids;
  for (const auto& [key, value] : settings) {
    const std::string name = py::cast<std::string>(key);
    set_setting(converted, name, value);
    ids.push_back(id_of(name));
  }
  return [converted, ids](Options& options) {
    for (SettingId id : ids) {
      std::visit(
          [&](const auto& value) {
            using T = std::decay_t<decltype(value)>;
            const std::string& name = setting_spec(id).name;
            if constexpr (std::is_same_v<T, std::optional<int64_t>>) {
              if (value) {
                options.set(name, *value);
              } else {
                options.set(Setting<T>(setting_spec(id)), std::optional<int64_t>());
              }
            } else if constexpr (!std::is_same_v<T, std::shared_ptr<const ProcessGroup>>) {
              options.set(name, value);  // never a process group: set_setting refuses one
            }
          },
          converted.value(id));
    }
  };
}

void bind_settings(py::module_& module) {
  py::class_<Options>(module, "Options",
                      "Every setting of an optimizer and of its loop, by name (the settings "
                      "table). The package's keyword arguments fill one.")
      .def(py::init<>())
      .def(
          "set",
          [](Options& options, const std::string& name, py::handle value) -> Options& {
            set_setting(options, name, value);
            return options;
          },
          py::arg("name"), py::arg("value"), py::return_value_policy::reference_internal,
          "Sets the setting `name`; TypeError for an unknown name or a value of another type.")
      .def("get", &get_setting, py::arg("name"), "The value of the setting `name`.")
      .def(
          "is_set",
          [](const Options& options, const std::string& name) { return options.is_set(name); },
          py::arg("name"), "Whether `name` was given a value rather than left at its default.")
      .def("validate", &Options::validate,
           "Raises ValueError naming the first setting that makes no sense.")
      .def(
          "with_algorithm_defaults",
          [](const Options& options) { return detail::with_algorithm_defaults(options); },
          "These options with the defaults of the algorithm `algo` names (AdamW's, L-BFGS's).")
      .def(
          "items", [](const Options& options) { return options.settings(); },
          "Every setting as (name, text), in the table's order, as the settings log shows them.");

  module.def(
      "settings_table",
      [] {
        py::list rows;
        for (SettingId id : setting_ids()) {
          const SettingSpec& spec = setting_spec(id);
          py::dict row;
          row["name"] = spec.name;
          row["scope"] = std::string(to_string(spec.scope));
          row["doc"] = spec.doc;
          row["choices"] = spec.choices;
          row["takes"] = type_word(spec);
          row["default"] = get_setting(Options(), spec.name);
          py::list aliases;
          for (const auto& [alias, target] : detail::setting_aliases()) {
            if (target == id) aliases.append(alias);
          }
          row["aliases"] = aliases;
          rows.append(row);
        }
        return rows;
      },
      "Every row of the settings table: name, scope, doc, choices, takes, default, aliases.");
}

}  // namespace downhill::python
