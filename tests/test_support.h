#pragma once
// Helpers shared by the test programs.

#include <downhill/logging.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace downhill::testing {

// A folder of its own under the system's temporary folder ("downhill_LABEL_PID"), emptied
// first and removed afterwards.
class TemporaryFolder {
 public:
  explicit TemporaryFolder(const std::string& label)
      : path_(std::filesystem::temp_directory_path() /
              ("downhill_" + label + "_" + std::to_string(getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TemporaryFolder() { std::filesystem::remove_all(path_); }
  TemporaryFolder(const TemporaryFolder&) = delete;
  TemporaryFolder& operator=(const TemporaryFolder&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Runs `action`, expects it to throw exactly `Expected`, and returns the message
// (recording a test failure otherwise).
template <typename Expected>
std::string message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Expected& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw another type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "did not throw";
  return {};
}

// Sets downhill's logger to `level` for the lifetime of the object, then puts the
// previous level back, so that no test leaves the process-wide logger changed.
class ScopedLogLevel {
 public:
  explicit ScopedLogLevel(spdlog::level::level_enum level) : saved_(downhill::logger()->level()) {
    downhill::logger()->set_level(level);
  }
  ~ScopedLogLevel() { downhill::logger()->set_level(saved_); }
  ScopedLogLevel(const ScopedLogLevel&) = delete;
  ScopedLogLevel& operator=(const ScopedLogLevel&) = delete;

 private:
  spdlog::level::level_enum saved_;
};

// Routes downhill's log lines into a string for the lifetime of the object.
class LogCapture {
 public:
  explicit LogCapture(spdlog::level::level_enum level = spdlog::level::info)
      : saved_sinks_(downhill::logger()->sinks()), saved_level_(downhill::logger()->level()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(lines_);
    sink->set_pattern("%l %v");
    downhill::logger()->sinks() = {sink};
    downhill::logger()->set_level(level);
  }
  ~LogCapture() {
    downhill::logger()->sinks() = saved_sinks_;
    downhill::logger()->set_level(saved_level_);
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::string text() const { return lines_.str(); }
  // Lines at warning level that contain `needle`.
  int warnings_with(const std::string& needle) const {
    std::istringstream in(lines_.str());
    int count = 0;
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("warning ", 0) == 0 && line.find(needle) != std::string::npos) ++count;
    }
    return count;
  }

 private:
  std::ostringstream lines_;
  std::vector<spdlog::sink_ptr> saved_sinks_;
  spdlog::level::level_enum saved_level_;
};

}  // namespace downhill::testing
