#include <downhill/monitors.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

namespace downhill {

const Monitors::Entry* Monitors::find(std::string_view name) const {
  if (positions_.empty()) {
    for (const auto& entry : entries_) {
      if (entry.first == name) return &entry;
    }
    return nullptr;
  }
  const auto it = positions_.find(name);
  return it == positions_.end() ? nullptr : &entries_[it->second];
}

Monitors::Entry* Monitors::find(std::string_view name) {
  return const_cast<Entry*>(std::as_const(*this).find(name));
}

double Monitors::at(std::string_view name) const {
  if (const auto* entry = find(name)) return entry->second;
  std::string known;
  for (const auto& [key, value] : entries_) known += (known.empty() ? "" : ", ") + key;
  throw std::out_of_range("downhill: no monitor named '" + std::string(name) +
                          "'; known monitors: " + (known.empty() ? "(none)" : known));
}

bool Monitors::contains(std::string_view name) const noexcept { return find(name) != nullptr; }

void Monitors::set(std::string_view name, double value) {
  if (auto* entry = find(name)) {
    entry->second = value;
    return;
  }
  entries_.emplace_back(std::string(name), value);
  if (!positions_.empty()) {
    positions_.emplace(entries_.back().first, entries_.size() - 1);
  } else if (entries_.size() > kScanLimit) {
    for (size_t k = 0; k < entries_.size(); ++k) positions_.emplace(entries_[k].first, k);
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
