#pragma once
// Exceptions specific to downhill (bad input is std::invalid_argument).

#include <cstdint>
#include <stdexcept>
#include <string>

namespace downhill {

/// Thrown by the loop after `max_nonfinite` consecutive updates were skipped
/// because the loss or a gradient was NaN or infinite. The best parameters have
/// been restored when it is thrown.
class DivergenceError : public std::runtime_error {
 public:
  DivergenceError(const std::string& what, int64_t skipped_updates)
      : std::runtime_error(what), skipped_updates_(skipped_updates) {}
  /// How many consecutive updates were skipped.
  int64_t skipped_updates() const noexcept { return skipped_updates_; }

 private:
  int64_t skipped_updates_;
};

}  // namespace downhill
