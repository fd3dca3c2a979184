// The extension module `downhill._downhill`: the library's types and calls, which the
// package's Python files (python/downhill/*.py) give their Python shape.

#include <pybind11/pybind11.h>

#include "python_data.h"
#include "python_errors.h"
#include "python_logging.h"
#include "python_optimizer.h"
#include "python_settings.h"

PYBIND11_MODULE(_downhill, module) {
  // Tensors cross as torch.Tensor: torch's Python module must be loaded first.
  pybind11::module_::import("torch");
  module.doc() = "downhill's engine (C++ on LibTorch); use the package `downhill`.";
  downhill::python::bind_errors(module);
  downhill::python::bind_settings(module);
  downhill::python::bind_data(module);
  downhill::python::bind_optimizer(module);
  downhill::python::bind_logging(module);
}
