#include "python_logging.h"

#include <downhill/logging.h>
#include <spdlog/sinks/base_sink.h>

#include <iostream>
#include <mutex>
#include <string>

#include "log_pattern.h"

namespace downhill::python {

namespace {

// Python's logging level of a line of `level`.
int python_level(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return 10;
    case spdlog::level::info:
      return 20;
    case spdlog::level::warn:
      return 30;
    case spdlog::level::err:
      return 40;
    default:
      return 50;
  }
}

class PythonLoggingSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& message) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(message, formatted);
    std::string line(formatted.data(), formatted.size());
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    // Python's formatter adds its own time: drop downhill's ("%H:%M:%S "), keep a rank tag.
    if (line.size() > 9 && line[2] == ':' && line[5] == ':' && line[8] == ' ') line.erase(0, 9);
    // The library logs while the GIL is released (the thread that called it waits for it);
    // after the interpreter has gone, lines go to standard error.
    if (!Py_IsInitialized() || _Py_IsFinalizing()) {
      std::cerr << line << '\n';
      return;
    }
    py::gil_scoped_acquire gil;
    try {
      py::module_::import("logging")
          .attr("getLogger")("downhill")
          .attr("log")(python_level(message.level), line);
    } catch (py::error_already_set&) {
      std::cerr << line << '\n';  // a handler that raises loses no line
    }
  }
  void flush_() override {}
};

}  // namespace

void bind_logging(py::module_& module) {
  auto log = logger();
  log->sinks() = {std::make_shared<PythonLoggingSink>()};
  log->set_pattern(detail::log_pattern());  // the sink's lines as downhill writes them
  // At exit the interpreter goes away before LibTorch's static objects: back to stderr first.
  py::module_::import("atexit").attr("register")(py::cpp_function([] { log_to(std::cerr); }));
}

}  // namespace downhill::python
