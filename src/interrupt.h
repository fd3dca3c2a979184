#pragma once
// Ctrl-C during the loop: the first SIGINT asks the loop to stop after the
// current batch; a second one ends the program as the previous handler would.

namespace downhill::detail {

/// Installs downhill's SIGINT handler for its lifetime (nested guards share one
/// installation) and restores the previous handler afterwards.
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

  /// Whether Ctrl-C was pressed since the outermost guard was installed.
  static bool requested() noexcept;
};

}  // namespace downhill::detail
