#pragma once
// Command-line helpers the benchmarks share.

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace bench {

/// "1e5,1.6e7" as integers (scientific notation accepted).
inline std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> values;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) values.push_back(static_cast<int64_t>(std::stod(item)));
  return values;
}

}  // namespace bench
