#pragma once
// downhill's logger: spdlog, named "downhill".

// The full logger class, so that `downhill::logger()->set_level(...)` works with
// no further include (spdlog's logger header is light next to LibTorch's).
#include <spdlog/logger.h>

#include <iosfwd>
#include <memory>

namespace downhill {

/// The logger every line of downhill goes through (also reachable as
/// spdlog::get("downhill")). Silence it with `logger()->set_level(spdlog::level::off)`,
/// send it somewhere else with log_to(), or replace its sinks.
std::shared_ptr<spdlog::logger> logger();

/// Sends downhill's lines to `stream` (std::cout, a std::ofstream, ...) instead of stderr, in
/// its format ("%H:%M:%S %v"; "[rank R]" after the time on data-parallel ranks other than 0),
/// each line flushed. The stream must outlive the logging, or the next log_to. Replaces the
/// logger's sinks: call it before a run, not while one logs from another thread.
void log_to(std::ostream& stream);

}  // namespace downhill
