#pragma once
// What the loop keeps between passes and between Iterations: its counters, the pass in
// progress, the best parameters, and dataset positions waiting for the next run after a
// checkpoint was loaded. Saved and loaded with checkpoints. Internal.

#include <downhill/monitors.h>
#include <downhill/params.h>
#include <downhill/run_summary.h>
#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint_schema.h"

namespace downhill {
class Dataset;
}

namespace downhill::detail {

/// The pass in progress: steps taken, updates skipped and the sample-weighted monitor
/// sums so far. A run stopped inside a pass (Ctrl-C, divergence) checkpoints it, so that
/// the resumed run finishes that pass rather than starting it over.
struct PassProgress {
  /// One monitor's sample-weighted sum, and the weight of the batches that reported it.
  struct Sum {
    std::string name;
    double sum = 0.0;
    double weight = 0.0;
  };
  int64_t steps = 0;
  int64_t skipped = 0;
  double weight = 0.0;    // of every batch so far
  std::vector<Sum> sums;  // in the order the monitors first appeared
};

/// Where the loop stands.
struct LoopCounters {
  int64_t passes = 0;
  int64_t validations = 0;
  int64_t best_validation = 0;  // 0: no finite validation yet
  double best_loss = 0.0;
  Monitors best_monitors;  // of the best validation
  int64_t best_pass = 0;   // passes trained before it
  // Why the run stopped; saved, so that a run re-run from the checkpoint of a run that had
  // stopped by itself knows it (the checkpoint is written at the stop).
  StopReason stop = StopReason::kNotStopped;
  std::string stop_detail;  // a callback's reason (kCallback); not saved
  // A max_passes or max_steps stop's closing validation, measured before the checkpoint at
  // the stop (which holds the run as it stood before it) and saved beside it; else empty.
  Monitors closing_validation;
  double seconds = 0.0;  // wall-clock time of the run so far, across resumes
  int64_t consecutive_skipped = 0;
  int64_t plateau_waiting = 0;   // validations without improvement toward a reduction
  int64_t plateau_cooldown = 0;  // validations left before those count again
  Monitors last_validation;
  PassProgress pass;
  // The loss's calls and the gradients computed since the run began or resumed; not saved.
  int64_t loss_evaluations = 0;
  int64_t gradient_evaluations = 0;
};

/// A dataset's place in its walk, as a checkpoint saves it.
struct DatasetPosition {
  std::vector<int64_t> order;
  int64_t position = 0;
  at::Tensor generator_state;  // undefined when the dataset has no generator of its own
};

/// Where `data` stands in its walk.
DatasetPosition position_of(const Dataset& data);
/// Puts `data` where `saved` says (its generator's state too, when both have one).
void put_back(Dataset& data, const DatasetPosition& saved);

/// The loop's part of a checkpoint: what save() writes, and what read() returns checked and
/// commit() applies. Its fields are listed in loop_state.cpp.
struct LoopSnapshot {
  LoopCounters counters;
  std::vector<at::Tensor> best;
  std::vector<DatasetPosition> datasets;  // train, then valid when saved
};

/// What the loop's fields are checked against when read.
struct LoopContext {
  const Params& params;
  const Dataset* train;  // the datasets of the run to continue, when known
  const Dataset* valid;
};

class LoopState {
 public:
  LoopCounters counters;
  /// Whether Ctrl-C was seen at the latest step: on any rank, when data-parallel (the ranks
  /// agree at each step, so that they stop at the same one). Not saved.
  bool interrupt_requested = false;
  /// The training data of the run in progress when it is one batch of everything and the
  /// validation is of it (no validation set, one process): each validation is then the loss
  /// and gradient at the point the next update starts from, evaluated once for both
  /// (Optimizer::evaluate). Null otherwise; only compared, never read through.
  const Dataset* point_data = nullptr;

  /// A run that does not continue a checkpoint starts its counters afresh.
  void start_afresh() { counters = LoopCounters(); }
  /// Copies the parameters as the best so far.
  void keep_best(const Params& params);
  /// The best parameters (empty before any validation).
  const std::vector<at::Tensor>& best() const noexcept { return best_; }

  /// Whether a loaded checkpoint waits for the next run to put its datasets in place.
  bool resume_pending() const noexcept { return pending_.has_value(); }
  /// Puts the datasets where the loaded checkpoint had them (once).
  void resume_datasets(Dataset& train, Dataset* valid);

  /// Checkpoints: the loop's fields, with the datasets' positions when given.
  void save(EntryWriter& writer, const Dataset* train, const Dataset* valid) const;
  /// Reads and checks (the reader's refusals): the best parameters must fit `params`, and
  /// the datasets, when given, the saved positions. Changes nothing.
  LoopSnapshot read(EntryReader& reader, const Params& params, const Dataset* train,
                    const Dataset* valid) const;
  void commit(LoopSnapshot&& snapshot);

 private:
  std::vector<at::Tensor> best_;
  std::optional<std::vector<DatasetPosition>> pending_;
};

}  // namespace downhill::detail
