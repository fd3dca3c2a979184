#include <downhill/logging.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <mutex>
#include <ostream>
#include <string>

#include "log_pattern.h"

namespace downhill {

namespace {
// downhill's format, as the Python package's lines: the time, then the text.
constexpr const char* kPattern = "%H:%M:%S %v";
}  // namespace

std::shared_ptr<spdlog::logger> logger() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (!spdlog::get("downhill")) {
      auto created = spdlog::stderr_color_mt("downhill");
      created->set_pattern(kPattern);
    }
  });
  auto existing = spdlog::get("downhill");
  // A user may have dropped it from the registry; make a fresh one then.
  return existing ? existing : spdlog::stderr_color_mt("downhill");
}

void log_to(std::ostream& stream) {
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(stream, /*force_flush=*/true);
  auto log = logger();
  log->sinks() = {sink};
  // The rank's pattern when data parallelism set one (detail::tag_rank), downhill's otherwise.
  log->set_pattern(detail::log_pattern());
}

namespace detail {

namespace {
std::string& current_pattern() {
  static std::string pattern = kPattern;
  return pattern;
}
}  // namespace

std::string log_pattern() { return current_pattern(); }

void tag_rank(int64_t rank) {
  current_pattern() = "%H:%M:%S [rank " + std::to_string(rank) + "] %v";
  logger()->set_pattern(current_pattern());
}

}  // namespace detail

}  // namespace downhill
