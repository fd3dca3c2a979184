#pragma once
// downhill's logger: spdlog, named "downhill".

// The full logger class, so that `downhill::logger()->set_level(...)` works with
// no further include (spdlog's logger header is light next to LibTorch's).
#include <spdlog/logger.h>

#include <memory>

namespace downhill {

/// The logger every line of downhill goes through (also reachable as
/// spdlog::get("downhill")). Silence it with `logger()->set_level(spdlog::level::off)`,
/// or redirect it by replacing its sinks.
std::shared_ptr<spdlog::logger> logger();

}  // namespace downhill
