#include <downhill/monitors.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace downhill {

namespace {
auto find(const std::vector<Monitors::Entry>& entries, std::string_view name) {
  return std::find_if(entries.begin(), entries.end(),
                      [&](const Monitors::Entry& e) { return e.first == name; });
}
}  // namespace

double Monitors::at(std::string_view name) const {
  auto it = find(entries_, name);
  if (it != entries_.end()) return it->second;
  std::string known;
  for (const auto& [key, value] : entries_) known += (known.empty() ? "" : ", ") + key;
  throw std::out_of_range("downhill: no monitor named '" + std::string(name) +
                          "'; known monitors: " + (known.empty() ? "(none)" : known));
}

bool Monitors::contains(std::string_view name) const noexcept {
  return find(entries_, name) != entries_.end();
}

void Monitors::set(std::string_view name, double value) {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const Entry& e) { return e.first == name; });
  if (it != entries_.end()) {
    it->second = value;
  } else {
    entries_.emplace_back(std::string(name), value);
  }
}

std::string Monitors::to_string() const {
  std::string out;
  char buffer[64];
  for (const auto& [key, value] : entries_) {
    // Fixed-point reads best in the usual range; outside it (1e100, 1e-7) the exponent
    // form keeps the line short and the digits significant.
    const double magnitude = std::abs(value);
    const bool fixed =
        value == 0 || !std::isfinite(value) || (magnitude >= 1e-4 && magnitude < 1e9);
    std::snprintf(buffer, sizeof buffer, fixed ? "%f" : "%e", value);
    if (!out.empty()) out += ' ';
    out += key + '=' + buffer;
  }
  return out;
}

}  // namespace downhill
