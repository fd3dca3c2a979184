#include "history.h"

#include <downhill/logging.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "atomic_file.h"

namespace downhill::detail {

namespace {

std::string json_number(double value) {
  if (!std::isfinite(value)) return "null";
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string json_monitors(const Monitors& monitors) {
  std::string out = "{";
  for (const auto& [name, value] : monitors) {
    if (out.size() > 1) out += ", ";
    out += json_string(name) + ": " + json_number(value);
  }
  return out + "}";
}

// The pass of a complete record line that is not a closing one, if it is one.
std::optional<int64_t> pass_of(const std::string& line) {
  static const std::string kPrefix = "{\"pass\": ";
  if (line.rfind(kPrefix, 0) != 0 || line.find("\"closing\": true") != std::string::npos) {
    return std::nullopt;
  }
  try {
    return std::stoll(line.substr(kPrefix.size()));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::string history_line(const HistoryRecord& record) {
  std::string line = "{\"pass\": " + std::to_string(record.pass);
  if (record.closing) line += ", \"closing\": true";
  line += ", \"updates\": " + std::to_string(record.updates);
  line += ", \"seconds\": " + json_number(record.seconds);
  line += ", \"learning_rate\": " + json_number(record.learning_rate);
  if (record.train) line += ", \"train\": " + json_monitors(*record.train);
  if (record.valid) {
    line += ", \"validation\": " + std::to_string(record.validation);
    line += ", \"valid_pass\": " + std::to_string(record.valid_pass);
    line += ", \"valid\": " + json_monitors(*record.valid);
  }
  return line + "}";
}

void HistoryFile::start(const std::string& path, bool resumed, int64_t passes) {
  path_ = path;
  failed_ = false;
  if (path_.empty()) return;
  std::string kept;
  if (resumed) {
    std::ifstream in(path_, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    const std::string all = text.str();
    size_t begin = 0;
    // Only whole lines (a kill can leave the last one cut short) of passes the checkpoint has.
    for (size_t end; (end = all.find('\n', begin)) != std::string::npos; begin = end + 1) {
      const std::string line = all.substr(begin, end - begin);
      const auto pass = pass_of(line);
      if (pass && *pass <= passes) kept += line + '\n';
    }
  }
  try {
    write_file_atomically(path_, kept);
  } catch (const std::exception& e) {
    throw std::runtime_error("downhill: history '" + path_ + "' cannot be written: " + e.what());
  }
}

void HistoryFile::append(const HistoryRecord& record) {
  if (path_.empty() || failed_) return;
  std::ofstream out(path_, std::ios::app | std::ios::binary);
  // One write of the whole line: a kill leaves at most one partial line, which a resumed
  // run drops.
  const std::string line = history_line(record) + '\n';
  out.write(line.data(), static_cast<std::streamsize>(line.size()));
  out.flush();
  if (!out) {
    failed_ = true;
    logger()->error("could not append to the history '{}'; the run goes on without it", path_);
  }
}

}  // namespace downhill::detail
