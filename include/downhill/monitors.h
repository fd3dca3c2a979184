#pragma once
// The values of one evaluation: an ordered name -> double map.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace downhill {

/// Named values of one evaluation (or of one pass, averaged). The first entry
/// is always "loss" once anything has been recorded.
class Monitors {
 public:
  using Entry = std::pair<std::string, double>;

  /// The value named `name`; throws std::out_of_range naming the known monitors.
  double at(std::string_view name) const;
  /// Whether a value named `name` is present.
  bool contains(std::string_view name) const noexcept;
  /// Sets `name` to `value`, appending it if new (order of first insertion is kept).
  void set(std::string_view name, double value);

  size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  auto begin() const noexcept { return entries_.begin(); }
  auto end() const noexcept { return entries_.end(); }

  /// "loss=0.123456 err=0.100000", as downhill logs them.
  std::string to_string() const;

  /// Up to this many entries a lookup scans them (and allocates nothing); beyond, a map.
  static constexpr size_t kScanLimit = 16;

 private:
  // Hashes a std::string and a std::string_view alike, so that a lookup by view makes no
  // string.
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view name) const noexcept {
      return std::hash<std::string_view>{}(name);
    }
  };

  Entry* find(std::string_view name);
  const Entry* find(std::string_view name) const;

  std::vector<Entry> entries_;
  // Name → position, kept once there are more than a few entries, so that a pass over
  // thousands of monitors stays linear in their number.
  std::unordered_map<std::string, size_t, NameHash, std::equal_to<>> positions_;
};

}  // namespace downhill
