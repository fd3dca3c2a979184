#pragma once
// Gradient accumulation: a window of `accumulate` batches whose gradients are summed, the
// update made from their mean at the window's last batch. Internal; the update engine owns
// one, and writes its entries into the engine's part of a checkpoint.

#include <ATen/ATen.h>
#include <downhill/params.h>

#include <cstdint>
#include <vector>

#include "archive_io.h"

namespace downhill::detail {

/// A partly filled window as a checkpoint holds it, read and checked, not yet applied.
struct WindowSnapshot {
  int64_t count = 0;
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

  /// Its checkpoint entries ("accumulate", "window_count", "window_<i>"); `size` is the
  /// window size in force.
  void save(torch::serialize::OutputArchive& archive, int64_t size) const;
  /// Reads and checks the entries against `params` and the window size `size` in force
  /// (calling `mismatch`); changes nothing.
  static WindowSnapshot read(torch::serialize::InputArchive& archive, const Params& params,
                             int64_t size, const Mismatch& mismatch);
  void commit(WindowSnapshot&& snapshot);

 private:
  std::vector<at::Tensor> sums_;
  int64_t count_ = 0;
};

}  // namespace downhill::detail
