#pragma once
// Python exceptions across downhill's C++ code. A Python exception raised in a callable that
// downhill calls (the loss, a generator, a schedule, a callback) unwinds through the library as
// a std::runtime_error carrying its message, and is raised again as itself, with the
// library's context added as a note, when the call returns to Python.

#include <pybind11/pybind11.h>

#include <memory>
#include <utility>

namespace downhill::python {

namespace py = pybind11;

/// Keeps `error` and throws a std::runtime_error with its message in its place.
[[noreturn]] void throw_kept(py::error_already_set&& error);

/// For a catch (...) at the boundary back to Python: raises the kept Python exception when the
/// exception in flight carries it, else rethrows the exception in flight.
[[noreturn]] void rethrow_for_python();

/// Runs `body` (a call into the library that may call Python) with the boundary's translation.
template <typename Body>
decltype(auto) guarded(Body&& body) {
  try {
    return std::forward<Body>(body)();
  } catch (...) {
    rethrow_for_python();
  }
}

/// guarded(body) with the GIL released while `body` runs: every call into the library that may
/// reach LibTorch's autograd engine (which refuses to run while the GIL is held) or take long.
/// `body` must not touch Python objects; whatever downhill calls in Python takes the GIL back.
template <typename Body>
auto without_gil(Body&& body) {
  return guarded([&] {
    py::gil_scoped_release release;
    return body();
  });
}

/// A Python object that C++ code may copy and let go of without holding the GIL: the last
/// owner takes the GIL to release it.
std::shared_ptr<py::object> shared_python_object(py::object object);

/// Calls the Python callable `function` with `args`, keeping any exception it raises.
template <typename... Args>
py::object call_python(const py::object& function, Args&&... args) {
  try {
    return function(std::forward<Args>(args)...);
  } catch (py::error_already_set& error) {
    throw_kept(std::move(error));
  }
}

/// Registers downhill.DivergenceError and the translation of LibTorch's errors.
void bind_errors(py::module_& module);

}  // namespace downhill::python
