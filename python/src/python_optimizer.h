#pragma once
// The optimizer from Python: build, its calls, the loop as an iterator, and callbacks.

#include <pybind11/pybind11.h>

namespace downhill::python {

namespace py = pybind11;

/// Binds Optimizer, its run iterator, RunSummary, Callback and RunView, and build().
void bind_optimizer(py::module_& module);

}  // namespace downhill::python
