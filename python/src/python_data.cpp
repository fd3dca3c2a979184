#include "python_data.h"

#include <ATen/CPUGeneratorImpl.h>
#include <downhill/dataset.h>
#include <pybind11/functional.h>
#include <pybind11/stl.h>
#include <torch/csrc/Generator.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "python_errors.h"

namespace downhill::python {

namespace {

// Raises Python's TypeError from inside a call downhill made (kept across the library).
[[noreturn]] void raise_type_error(const std::string& message) {
  PyErr_SetString(PyExc_TypeError, message.c_str());
  throw_kept(py::error_already_set());
}

std::string type_name(py::handle value) {
  return py::str(py::type::of(value).attr("__name__")).cast<std::string>();
}

// A monitor's value: a tensor as it is, a number as a double tensor.
at::Tensor monitor_tensor(const std::string& name, py::handle value) {
  if (THPVariable_Check(value.ptr())) return THPVariable_Unpack(value.ptr());
  if (PyFloat_Check(value.ptr()) || PyLong_Check(value.ptr()) || py::hasattr(value, "__float__")) {
    const double number = PyFloat_AsDouble(value.ptr());
    if (number == -1.0 && PyErr_Occurred()) throw_kept(py::error_already_set());
    return at::scalar_tensor(number, at::kDouble);
  }
  raise_type_error("monitor '" + name + "' must be a scalar tensor or a number, not " +
                   type_name(value));
}

Evaluation to_evaluation(py::handle result) {
  if (THPVariable_Check(result.ptr())) return Evaluation(THPVariable_Unpack(result.ptr()));
  if (py::isinstance<py::tuple>(result) && py::len(result) == 2) {
    auto pair = py::reinterpret_borrow<py::tuple>(result);
    if (!THPVariable_Check(pair[0].ptr())) {
      raise_type_error("the loss returned (" + type_name(pair[0]) +
                       ", ...); its first element must be the loss, a scalar tensor");
    }
    std::vector<std::pair<std::string, at::Tensor>> monitors;
    py::handle named = pair[1];
    py::object items = py::isinstance<py::dict>(named) ? py::object(named.attr("items")())
                                                       : py::reinterpret_borrow<py::object>(named);
    try {
      for (py::handle item : items) {
        auto entry = py::reinterpret_borrow<py::tuple>(item);
        const std::string name = py::str(entry[0]).cast<std::string>();
        monitors.emplace_back(name, monitor_tensor(name, entry[1]));
      }
    } catch (py::error_already_set& error) {
      throw_kept(std::move(error));
    } catch (const py::cast_error&) {
      raise_type_error("the loss's monitors must be a dict of name: scalar, not " +
                       type_name(named));
    }
    return Evaluation(THPVariable_Unpack(pair[0].ptr()), std::move(monitors));
  }
  raise_type_error("the loss must return a scalar tensor or a pair (loss, {name: scalar}), not " +
                   type_name(result));
}

// A batch the Python package made: a list of tensors.
Batch to_batch(py::handle value, const char* source) {
  Batch batch;
  if (THPVariable_Check(value.ptr())) return {THPVariable_Unpack(value.ptr())};
  if (!py::isinstance<py::sequence>(value) || py::isinstance<py::str>(value)) {
    raise_type_error(std::string(source) + " must give a tensor or a sequence of tensors, not " +
                     type_name(value));
  }
  for (py::handle item : value) {
    if (!THPVariable_Check(item.ptr())) {
      raise_type_error(std::string(source) + " gave a " + type_name(item) +
                       " in its batch; each element must be a tensor");
    }
    batch.push_back(THPVariable_Unpack(item.ptr()));
  }
  return batch;
}

std::optional<torch::Generator> to_generator(py::handle rng) {
  if (rng.is_none()) return std::nullopt;
  if (THPGenerator_Check(rng.ptr())) return reinterpret_cast<THPGenerator*>(rng.ptr())->cdata;
  if (PyLong_Check(rng.ptr()) && !PyBool_Check(rng.ptr())) {
    return at::make_generator<at::CPUGeneratorImpl>(py::cast<uint64_t>(rng));
  }
  throw py::type_error("rng must be None, an int seed or a torch.Generator, not " + type_name(rng));
}

DatasetOptions dataset_options(int64_t batch_size, std::optional<int64_t> iteration_size,
                               int64_t axis, bool shuffle, bool shuffle_samples,
                               const std::string& name, py::handle rng) {
  auto options = DatasetOptions()
                     .name(name)
                     .batch_size(batch_size)
                     .axis(axis)
                     .shuffle(shuffle)
                     .shuffle_samples(shuffle_samples);
  if (iteration_size) options.iteration_size(*iteration_size);
  if (auto generator = to_generator(rng)) options.generator(*generator);
  return options;
}

py::list to_list(const Batch& batch) {
  py::list list;
  for (const auto& tensor : batch) list.append(py::cast(tensor));
  return list;
}

}  // namespace

Loss python_loss(py::object loss) {
  auto function = shared_python_object(std::move(loss));
  return [function](const Batch& batch) -> Evaluation {
    py::gil_scoped_acquire gil;
    py::tuple args(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) args[i] = py::cast(batch[i]);
    py::object result = call_python(*function, *args);
    return to_evaluation(result);
  };
}

py::dict to_dict(const Monitors& monitors) {
  py::dict dict;
  for (const auto& [name, value] : monitors) dict[py::str(name)] = value;
  return dict;
}

void bind_data(py::module_& module) {
  py::class_<Dataset>(module, "_Dataset",
                      "The library's dataset; downhill.Dataset is its Python face.")
      .def(py::init([](const std::vector<at::Tensor>& arrays, int64_t batch_size,
                       std::optional<int64_t> iteration_size, int64_t axis, bool shuffle,
                       bool shuffle_samples, const std::string& name, py::object rng) {
             return Dataset(arrays, dataset_options(batch_size, iteration_size, axis, shuffle,
                                                    shuffle_samples, name, rng));
           }),
           py::arg("arrays"), py::arg("batch_size"), py::arg("iteration_size"), py::arg("axis"),
           py::arg("shuffle"), py::arg("shuffle_samples"), py::arg("name"), py::arg("rng"))
      .def(py::init([](py::function generator, int64_t batch_size,
                       std::optional<int64_t> iteration_size, int64_t axis, bool shuffle,
                       bool shuffle_samples, const std::string& name, py::object rng) {
             auto function = shared_python_object(std::move(generator));
             return Dataset(std::function<Batch()>([function]() -> Batch {
                              py::gil_scoped_acquire gil;
                              return to_batch(call_python(*function), "the dataset's callable");
                            }),
                            dataset_options(batch_size, iteration_size, axis, shuffle,
                                            shuffle_samples, name, rng));
           }),
           py::arg("generator"), py::arg("batch_size"), py::arg("iteration_size"), py::arg("axis"),
           py::arg("shuffle"), py::arg("shuffle_samples"), py::arg("name"), py::arg("rng"))
      .def_property_readonly("name", &Dataset::name, "Name used in log lines.")
      .def_property_readonly(
          "batch_size", [](const Dataset& data) { return data.options().batch_size(); },
          "Samples per batch (<= 0: one batch of everything).")
      .def_property_readonly("iteration_size", &Dataset::iteration_size, "Batches in one pass.")
      .def_property_readonly("slice_count", &Dataset::slice_count,
                             "Batches in one round of the data (tensors; 0 for a callable).")
      .def(
          "next", [](Dataset& data) { return to_list(without_gil([&] { return data.next(); })); },
          "The next batch, as a list of tensors, wrapping around (and reshuffling) at the end.")
      .def(
          "peek", [](Dataset& data) { return to_list(without_gil([&] { return data.peek(); })); },
          "The batch next() would return, without consuming it.");
}

}  // namespace downhill::python
