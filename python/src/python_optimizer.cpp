#include "python_optimizer.h"

#include <downhill/callbacks.h>
#include <downhill/dataset.h>
#include <downhill/iteration.h>
#include <downhill/minimize.h>
#include <downhill/optimizer.h>
#include <downhill/phase.h>
#include <downhill/registry.h>
#include <pybind11/stl.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "python_data.h"
#include "python_errors.h"
#include "python_settings.h"

namespace downhill::python {

namespace {

// Tensors from a Python list, None as an undefined tensor (a frozen group's gradient).
std::vector<at::Tensor> to_tensors(const py::sequence& values, const char* what) {
  std::vector<at::Tensor> tensors;
  for (py::handle value : values) {
    if (value.is_none()) {
      tensors.emplace_back();
    } else if (THPVariable_Check(value.ptr())) {
      tensors.push_back(THPVariable_Unpack(value.ptr()));
    } else {
      throw py::type_error(std::string(what) + " must be tensors (or None), not " +
                           py::str(py::type::of(value).attr("__name__")).cast<std::string>());
    }
  }
  return tensors;
}

// Params from the package's groups: a list of (entries, settings, frozen), entries a list of
// (name, tensor); the first group's settings are the optimizer's options.
Params to_params(const py::list& groups) {
  Params params;
  bool first = true;
  for (py::handle group : groups) {
    auto parts = group.cast<py::tuple>();
    std::vector<Params::Entry> entries;
    for (py::handle entry : parts[0].cast<py::list>()) {
      auto pair = entry.cast<py::tuple>();
      entries.emplace_back(pair[0].cast<std::string>(), pair[1].cast<at::Tensor>());
    }
    const bool frozen = parts[2].cast<bool>();
    if (first && !frozen) {
      params = Params(std::move(entries));
    } else if (frozen) {
      params.frozen(Params(std::move(entries)));
    } else {
      params.group(Params(std::move(entries)), settings_change(parts[1].cast<py::dict>()));
    }
    first = false;
  }
  return params;
}

py::list to_entries(const Params& params) {
  py::list list;
  for (const auto& [name, tensor] : params) list.append(py::make_tuple(name, tensor));
  return list;
}

// The loop as a Python iterator: one (train, valid) pair of dicts per pass.
class Run {
 public:
  explicit Run(Iteration iteration) : iteration_(std::move(iteration)) {}
  Run(Run&&) noexcept = default;
  Run& operator=(Run&&) noexcept = default;
  ~Run() {
    if (iteration_) close();
  }

  py::tuple next() {
    if (!iteration_) throw py::stop_iteration();
    try {
      py::gil_scoped_release release;
      if (!started_) {
        started_ = true;
        position_ = iteration_->begin();
      } else {
        ++position_;
      }
    } catch (...) {
      close();
      rethrow_for_python();
    }
    if (position_ == iteration_->end()) {
      close();
      throw py::stop_iteration();
    }
    return py::make_tuple(to_dict(position_->first), to_dict(position_->second));
  }

  // Ends the walk: a run left before its end keeps the parameters as they are (`break`).
  void close() {
    py::gil_scoped_release release;  // the run's end may log, and restores the Ctrl-C handler
    position_ = Iteration::iterator();
    iteration_.reset();
  }

 private:
  std::optional<Iteration> iteration_;
  Iteration::iterator position_;
  bool started_ = false;
};

// What a hook sees, copied for Python: it lives on after the call.
struct PythonRunView {
  int64_t passes, pass_steps, updates, validations, validation_steps, best_validation, best_pass;
  bool improved, closing, skipped, resumed;
  double seconds;
  std::string stop, stop_detail;
  py::dict monitors, best;
};

class PythonCallback : public Callback {
 public:
  void on_run_start(const RunView& run) override { dispatch("on_run_start", run); }
  void on_validation(const RunView& run) override { dispatch("on_validation", run); }
  void on_validation_batch(const RunView& run) override { dispatch("on_validation_batch", run); }
  void on_pass_start(const RunView& run) override { dispatch("on_pass_start", run); }
  void on_update(const RunView& run) override { dispatch("on_update", run); }
  void on_pass_end(const RunView& run) override { dispatch("on_pass_end", run); }
  void on_stop(const RunView& run) override { dispatch("on_stop", run); }
  void on_run_end(const RunView& run) override { dispatch("on_run_end", run); }

  void stop(std::string reason) { request_stop(std::move(reason)); }

 private:
  void dispatch(const char* hook, const RunView& run) {
    py::gil_scoped_acquire gil;
    py::function override = py::get_override(static_cast<const Callback*>(this), hook);
    if (!override) return;  // a hook the Python class does not define costs no copy
    PythonRunView view{run.passes,
                       run.pass_steps,
                       run.updates,
                       run.validations,
                       run.validation_steps,
                       run.best_validation,
                       run.best_pass,
                       run.improved,
                       run.closing,
                       run.skipped,
                       run.resumed,
                       run.seconds,
                       std::string(to_string(run.stop)),
                       run.stop_detail,
                       to_dict(run.monitors),
                       to_dict(run.best)};
    call_python(override, py::cast(std::move(view)));
  }
};

py::object summary_of(const RunSummary& summary) {
  py::object namespace_type = py::module_::import("types").attr("SimpleNamespace");
  return namespace_type(
      py::arg("best") = to_dict(summary.best), py::arg("best_pass") = summary.best_pass,
      py::arg("validations") = summary.validations,
      py::arg("best_validation") = summary.best_validation, py::arg("passes") = summary.passes,
      py::arg("updates") = summary.updates, py::arg("loss_evaluations") = summary.loss_evaluations,
      py::arg("gradient_evaluations") = summary.gradient_evaluations,
      py::arg("gradient_norm") = summary.gradient_norm,
      py::arg("stop") = std::string(to_string(summary.stop)),
      py::arg("stop_detail") = summary.stop_detail);
}

void bind_callbacks(py::module_& module) {
  py::class_<PythonRunView>(module, "RunView",
                            "Where the run stands when a callback's hook is called (a copy).")
      .def_readonly("passes", &PythonRunView::passes, "Passes trained so far.")
      .def_readonly("pass_steps", &PythonRunView::pass_steps,
                    "Batches taken in the pass in progress.")
      .def_readonly("updates", &PythonRunView::updates, "Updates applied so far.")
      .def_readonly("validations", &PythonRunView::validations, "Validations so far.")
      .def_readonly("validation_steps", &PythonRunView::validation_steps,
                    "on_validation_batch: batches of the validation in progress.")
      .def_readonly("best_validation", &PythonRunView::best_validation,
                    "The best validation's number (0: none yet).")
      .def_readonly("best_pass", &PythonRunView::best_pass,
                    "Passes trained before the best validation.")
      .def_readonly("improved", &PythonRunView::improved,
                    "on_validation: whether it improved on the best.")
      .def_readonly("closing", &PythonRunView::closing,
                    "on_validation: whether it closes a max_passes or max_steps stop.")
      .def_readonly("skipped", &PythonRunView::skipped,
                    "on_update: whether the update was skipped (a NaN or an infinity).")
      .def_readonly("resumed", &PythonRunView::resumed, "Whether the run continues a checkpoint.")
      .def_readonly("seconds", &PythonRunView::seconds, "Wall-clock seconds since the run began.")
      .def_readonly("stop", &PythonRunView::stop,
                    "Why the run stops ('not stopped' until a stop was asked).")
      .def_readonly("stop_detail", &PythonRunView::stop_detail,
                    "The reason a callback gave with its stop.")
      .def_readonly("monitors", &PythonRunView::monitors,
                    "The monitors the event computed (the batch's, the validation's, the pass's).")
      .def_readonly("best", &PythonRunView::best, "The best validation's monitors.");

  py::class_<Callback, PythonCallback, std::shared_ptr<Callback>>(
      module, "Callback",
      "Code of your own that the loop runs at its events. Subclass it and define any of "
      "on_run_start, on_validation, on_validation_batch, on_pass_start, on_update, on_pass_end, "
      "on_stop and on_run_end, each taking a RunView; add it with Optimizer.add_callback or "
      "callbacks=[...]. Call self.request_stop(reason) from a hook to end the run.")
      .def(py::init<>())
      .def(
          "request_stop",
          [](Callback& callback, std::string reason) {
            static_cast<PythonCallback&>(callback).stop(std::move(reason));
          },
          py::arg("reason"),
          "Asks the run to stop ('callback', with `reason` in the log and last_run.stop_detail).");
}

}  // namespace

void bind_optimizer(py::module_& module) {
  bind_callbacks(module);

  py::class_<Run>(module, "_Run", "The loop as an iterator of (train, valid) monitor dicts.")
      .def("__iter__", [](Run& run) -> Run& { return run; })
      .def("__next__", &Run::next)
      .def("close", &Run::close, "Leaves the run where it stands (as `break`).");

  py::class_<Optimizer, std::unique_ptr<Optimizer>>(module, "_Optimizer",
                                                    "The library's optimizer.")
      .def_property_readonly("name", &Optimizer::name)
      .def_property_readonly("params",
                             [](const Optimizer& opt) { return to_entries(opt.params()); })
      // Copies: a live change replaces the optimizer's options.
      .def_property_readonly("options", [](const Optimizer& opt) { return opt.options(); })
      .def(
          "group_options",
          [](const Optimizer& opt, size_t group) { return opt.group_options(group); },
          py::arg("group"))
      .def("group_of",
           [](const Optimizer& opt, size_t index) { return opt.params().group_of(index); })
      .def_property_readonly("group_count",
                             [](const Optimizer& opt) { return opt.params().group_count(); })
      .def(
          "change_options",
          [](Optimizer& opt, const py::dict& settings, std::optional<size_t> group) {
            const GroupSettings change = settings_change(settings);
            without_gil([&] {
              if (group) {
                opt.change_options(*group, change);
              } else {
                opt.change_options(change);
              }
              return 0;
            });
          },
          py::arg("settings"), py::arg("group") = py::none())
      .def_property_readonly("place",
                             [](const Optimizer& opt) {
                               const Place place = opt.place();
                               return py::make_tuple(place.rank, place.world_size);
                             })
      .def_property_readonly("needs_hessian_vector_products",
                             &Optimizer::needs_hessian_vector_products)
      .def(
          "apply",
          [](Optimizer& opt, const py::sequence& grads, const py::object& products) {
            auto gradients = to_tensors(grads, "gradients");
            if (products.is_none()) return without_gil([&] { return opt.apply(gradients); });
            auto hvs = to_tensors(products, "Hessian-vector products");
            return without_gil([&] { return opt.apply(gradients, hvs); });
          },
          py::arg("grads"), py::arg("hessian_vector_products") = py::none())
      .def(
          "step",
          [](Optimizer& opt, const py::sequence& batch) {
            auto tensors = to_tensors(batch, "a batch's elements");
            return to_dict(without_gil([&] { return opt.step(tensors); }));
          },
          py::arg("batch"))
      .def(
          "evaluate",
          [](Optimizer& opt, Dataset& data) {
            return to_dict(without_gil([&] { return opt.evaluate(data); }));
          },
          py::arg("data"))
      .def(
          "iterate",
          [](Optimizer& opt, Dataset& train, Dataset* valid, const py::dict& settings) {
            const GroupSettings change = settings_change(settings);
            return without_gil([&] { return Run(opt.iterate(train, valid, change)); });
          },
          py::arg("train"), py::arg("valid"), py::arg("settings"),
          // The run keeps the optimizer and both datasets alive.
          py::keep_alive<0, 1>(), py::keep_alive<0, 2>(), py::keep_alive<0, 3>())
      .def(
          "minimize",
          [](Optimizer& opt, Dataset& train, Dataset* valid, const py::dict& settings) {
            const GroupSettings change = settings_change(settings);
            auto [train_monitors, valid_monitors] =
                without_gil([&] { return opt.minimize(train, valid, change); });
            return py::make_tuple(to_dict(train_monitors), to_dict(valid_monitors));
          },
          py::arg("train"), py::arg("valid"), py::arg("settings"))
      .def("add_callback", &Optimizer::add_callback, py::arg("callback"), py::keep_alive<1, 2>())
      .def("remove_callback", &Optimizer::remove_callback, py::arg("callback"))
      .def_property_readonly("last_run",
                             [](const Optimizer& opt) { return summary_of(opt.last_run()); })
      .def(
          "set_params",
          [](Optimizer& opt, const py::sequence& values) {
            auto tensors = to_tensors(values, "parameter values");
            without_gil([&] {
              opt.set_params(tensors);
              return 0;
            });
          },
          py::arg("values"))
      .def("restore_best",
           [](Optimizer& opt) {
             without_gil([&] {
               opt.restore_best();
               return 0;
             });
           })
      .def("state",
           [](Optimizer& opt) {
             py::dict state;
             for (const auto& [name, tensor] : opt.state()) state[py::str(name)] = tensor;
             return state;
           })
      .def_property_readonly("update_count", &Optimizer::update_count)
      .def(
          "load_state",
          [](Optimizer& opt, const py::sequence& entries, int64_t update_count) {
            NamedTensors state;
            for (py::handle entry : entries) {
              auto pair = entry.cast<py::tuple>();
              state.emplace_back(pair[0].cast<std::string>(), pair[1].cast<at::Tensor>());
            }
            without_gil([&] {
              opt.load_state(state, update_count);
              return 0;
            });
          },
          py::arg("state"), py::arg("update_count"))
      .def(
          "save_checkpoint",
          [](const Optimizer& opt, const std::string& path, const Dataset* train,
             const Dataset* valid) {
            without_gil([&] {
              opt.save_checkpoint(path, train, valid);
              return 0;
            });
          },
          py::arg("path"), py::arg("train") = nullptr, py::arg("valid") = nullptr)
      .def(
          "load_checkpoint",
          [](Optimizer& opt, const std::string& path) {
            without_gil([&] {
              opt.load_checkpoint(path);
              return 0;
            });
          },
          py::arg("path"));

  module.def(
      "_build",
      [](const std::string& algo, const py::object& loss, const py::list& groups,
         const Options& options) {
        Params params = to_params(groups);
        Loss function = loss.is_none() ? Loss() : python_loss(loss);
        // Data-parallel, build joins the group and waits for the other ranks.
        return without_gil([&] {
          return function ? build(algo, std::move(function), std::move(params), options)
                          : build(algo, std::move(params), options);
        });
      },
      py::arg("algo"), py::arg("loss"), py::arg("groups"), py::arg("options"));
  module.def(
      "discover_params",
      [](const at::Tensor& loss) { return to_entries(downhill::discover_params(loss)); },
      py::arg("loss"),
      "The leaf tensors requiring grad that `loss` depends on, as (name, tensor) pairs named "
      "unnamed0, unnamed1, ... in a deterministic order.");
  module.def(
      "current_phase", [] { return std::string(to_string(current_phase())); },
      "What downhill is evaluating the loss for: 'training', 'validation' or 'none'. A model "
      "with dropout or batch norm can follow it: model.train(downhill.current_phase() == "
      "'training').");
  module.def(
      "algorithm_names", [] { return algorithm_names(); },
      "The names build() knows, lower case and sorted.");
  module.def(
      "torchrun_place",
      [] {
        const Place place = torchrun_place();
        return py::make_tuple(place.rank, place.world_size);
      },
      "This process's (rank, world_size) as torchrun gives them; (0, 1) without torchrun.");
}

}  // namespace downhill::python
