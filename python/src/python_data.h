#pragma once
// Data and losses from Python: datasets, batches, a Python loss as a downhill::Loss, and
// monitors as dicts.

#include <downhill/batch.h>
#include <downhill/monitors.h>
#include <pybind11/pybind11.h>

namespace downhill::python {

namespace py = pybind11;

/// A Python callable `loss(*batch)` as a Loss. It returns a scalar tensor, or a pair (loss,
/// monitors) with monitors a dict (or a sequence of pairs) of name → scalar tensor or number.
Loss python_loss(py::object loss);

/// The monitors as a dict, in their order.
py::dict to_dict(const Monitors& monitors);

/// Binds Dataset.
void bind_data(py::module_& module);

}  // namespace downhill::python
