#include "python_errors.h"

#include <c10/util/Exception.h>
#include <downhill/errors.h>

#include <exception>
#include <optional>
#include <stdexcept>
#include <string>

namespace downhill::python {

namespace {

// The Python exception in flight through the library, and the message it was thrown with.
// Only touched with the GIL held (downhill calls Python on the thread that called it).
struct Kept {
  std::optional<py::error_already_set> error;
  std::string message;
};

Kept& kept() {
  static Kept* value = new Kept();  // never destroyed: it may hold a Python object at exit
  return *value;
}

}  // namespace

void throw_kept(py::error_already_set&& error) {
  std::string message = error.what();
  kept().error.emplace(std::move(error));
  kept().message = message;
  throw std::runtime_error(message);
}

void rethrow_for_python() {
  Kept& held = kept();
  if (held.error) {
    std::optional<py::error_already_set> error;
    error.swap(held.error);
    try {
      throw;
    } catch (const std::exception& carrier) {
      const std::string context = carrier.what();
      // The carrier is ours (perhaps with the loop's context before the message): raise the
      // Python exception itself, the context as a note when there is one.
      if (context.find(held.message) != std::string::npos) {
        if (context != held.message) {
          py::object value = error->value();
          if (py::hasattr(value, "add_note")) {
            value.attr("add_note")(context.substr(0, context.find(held.message)) +
                                   "(raised in the Python code downhill called)");
          }
        }
        throw *error;
      }
    } catch (...) {
    }
  }
  throw;
}

std::shared_ptr<py::object> shared_python_object(py::object object) {
  return std::shared_ptr<py::object>(new py::object(std::move(object)), [](py::object* held) {
    if (!Py_IsInitialized()) return;  // at exit, after the interpreter: let it leak
    py::gil_scoped_acquire gil;
    delete held;
  });
}

void bind_errors(py::module_& module) {
  static py::exception<DivergenceError> divergence(module, "DivergenceError", PyExc_RuntimeError);
  divergence.doc() =
      "Raised by the loop after max_nonfinite consecutive updates were skipped because the "
      "loss or a gradient was NaN or infinite. The best parameters have been restored.";
  py::register_exception_translator([](std::exception_ptr thrown) {
    try {
      if (thrown) std::rethrow_exception(thrown);
    } catch (const DivergenceError& error) {
      divergence(error.what());
    } catch (const c10::Error& error) {
      // LibTorch's message without its C++ backtrace, as torch raises it.
      PyErr_SetString(PyExc_RuntimeError, error.what_without_backtrace());
    } catch (const std::logic_error& error) {
      // A call the object cannot take now (no loss, L-BFGS's apply): Python's RuntimeError.
      // std::invalid_argument and std::out_of_range, logic errors too, keep pybind11's
      // ValueError and IndexError.
      if (dynamic_cast<const std::invalid_argument*>(&error) ||
          dynamic_cast<const std::out_of_range*>(&error) ||
          dynamic_cast<const std::domain_error*>(&error) ||
          dynamic_cast<const std::length_error*>(&error)) {
        throw;
      }
      PyErr_SetString(PyExc_RuntimeError, error.what());
    }
  });
}

}  // namespace downhill::python
