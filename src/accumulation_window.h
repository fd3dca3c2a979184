#pragma once
// Gradient accumulation: a window of `accumulate` batches whose gradients are summed, the
// update made from their mean at the window's last batch. Internal; the update engine owns
// one, and its fields are in the engine's part of a checkpoint (engine_checkpoint.cpp).

#include <ATen/ATen.h>
#include <downhill/params.h>

#include <cstdint>
#include <vector>

namespace downhill::detail {

/// A partly filled window as a checkpoint holds it.
struct WindowSnapshot {
  int64_t size = 1;              // the window size in force (accumulate)
  int64_t count = 0;             // batches summed so far, fewer than size
  std::vector<at::Tensor> sums;  // per parameter; undefined for a frozen one
};

class AccumulationWindow {
 public:
  /// Adds one batch's gradients to a window of `size` batches. Returns false while the
  /// window is not full; when it is, returns true with `grads` replaced by the mean of the
  /// window's gradients, and starts a new window. Always true (changing nothing) for size 1.
  bool add(std::vector<at::Tensor>& grads, int64_t size);
  /// Batches summed so far.
  int64_t count() const noexcept { return count_; }
  /// Drops a partly filled window (a skipped update).
  void clear();
  /// Throws std::invalid_argument when the window size changes from `from` to `to` while
  /// batches are summed (change_options).
  void check_size_change(int64_t from, int64_t to) const;

  /// The window as a checkpoint holds it; `size` is the window size in force.
  WindowSnapshot snapshot(int64_t size) const { return {size, count_, sums_}; }
  /// Puts back a checked snapshot.
  void commit(WindowSnapshot&& snapshot);

 private:
  std::vector<at::Tensor> sums_;
  int64_t count_ = 0;
};

}  // namespace downhill::detail
