#pragma once
// The built-in callback that writes the checkpoint (Options::checkpoint; docs/guide.md,
// "Non-finite updates and checkpoints") every checkpoint_every passes and when the run
// stops, before the best parameters come back. Data-parallel, rank 0 writes. Internal; the
// file itself is checkpoint.h's.

#include <downhill/callbacks.h>

#include <string>

namespace downhill {
class Dataset;
}

namespace downhill::detail {

class RankGroup;

class CheckpointWriter final : public Callback {
 public:
  CheckpointWriter(const RankGroup& ranks, const Dataset& train, const Dataset* valid)
      : ranks_(ranks), train_(train), valid_(valid) {}

  /// The checkpoint's folder must exist and be writable before the run, not at its first
  /// write: std::invalid_argument naming the path otherwise. Empty: no checkpoint.
  static void check_folder(const std::string& path);

  void on_pass_end(const RunView& run) override;
  void on_stop(const RunView& run) override { write(run); }

 private:
  // A write that fails mid-run is logged, and the run goes on: losing the checkpoint is
  // better than losing the training and the best parameters with it.
  void write(const RunView& run);

  const RankGroup& ranks_;
  const Dataset& train_;
  const Dataset* valid_;
};

}  // namespace downhill::detail
