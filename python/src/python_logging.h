#pragma once
// downhill's lines through Python's logging, logger "downhill".

#include <pybind11/pybind11.h>

namespace downhill::python {

namespace py = pybind11;

/// Sends the library's log lines to logging.getLogger("downhill") from now on, and back to
/// standard error when the interpreter exits.
void bind_logging(py::module_& module);

}  // namespace downhill::python
