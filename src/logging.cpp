#include <downhill/logging.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>

namespace downhill {

std::shared_ptr<spdlog::logger> logger() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (!spdlog::get("downhill")) {
      auto created = spdlog::stderr_color_mt("downhill");
      created->set_pattern("%H:%M:%S %v");
    }
  });
  auto existing = spdlog::get("downhill");
  // A user may have dropped it from the registry; make a fresh one then.
  return existing ? existing : spdlog::stderr_color_mt("downhill");
}

}  // namespace downhill
