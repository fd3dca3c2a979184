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

// Wall-clock seconds to the millisecond: the clock's digits beyond say nothing, and plots and
// diffs of history files read better without them.
std::string json_seconds(double seconds) {
  if (!std::isfinite(seconds)) return "null";
  char text[32];
  std::snprintf(text, sizeof text, "%.3f", seconds);
  return text;
}

// The length of the well-formed UTF-8 sequence at text[i] (1 to 4), or 0 when the bytes there
// are not one (a stray continuation byte, a cut or overlong sequence, a surrogate, > U+10FFFF).
size_t utf8_sequence(const std::string& text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned lead = byte(i);
  if (lead < 0x80) return 1;
  size_t length = 0;
  unsigned low = 0x80, high = 0xBF;  // the second byte's range
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // no overlong forms
    if (lead == 0xED) high = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;  // at most U+10FFFF
  } else {
    return 0;
  }
  if (i + length > text.size() || byte(i + 1) < low || byte(i + 1) > high) return 0;
  for (size_t k = 2; k < length; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return length;
}

// A JSON string: quotes, backslashes and control characters escaped, and bytes that are not
// UTF-8 replaced by U+FFFD, so that every line parses.
std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    const size_t length = utf8_sequence(text, i);
    if (length == 0) {
      out += "\\ufffd";
      ++i;
    } else if (length > 1) {
      out.append(text, i, length);
      i += length;
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
      ++i;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
      out += escaped;
      ++i;
    } else {
      out += c;
      ++i;
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
  line += ", \"seconds\": " + json_seconds(record.seconds);
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
