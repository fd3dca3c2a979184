#pragma once
// An optimizer's data-parallel side (docs/guide.md, "Scaling out"): at build, the group is
// joined and every rank checked to hold the same optimizer and given rank 0's parameters;
// at each update, gradients are averaged across ranks with the step's flags agreed; at the
// start of a run, datasets are sharded and rank 0's orders and generators given to all;
// monitors are summed across ranks. Internal; Optimizer and the loop call it.

#include <ATen/ATen.h>
#include <downhill/distributed.h>

#include <memory>
#include <string>
#include <vector>

#include "communicator.h"

namespace downhill {
class Dataset;
}

namespace downhill::detail {

class UpdateEngine;
struct PassProgress;

/// What a data-parallel step agrees on, beside the gradients: counts over ranks.
struct StepFlags {
  double nonfinite_losses = 0;  // ranks whose loss was not finite
  double interrupts = 0;        // ranks that saw Ctrl-C
};

class DataParallel {
 public:
  /// Null unless `engine`'s options ask for data parallelism. Otherwise joins the group;
  /// with more than one rank, checks that every rank built the same optimizer (a clear
  /// std::invalid_argument on every rank otherwise) and copies rank 0's parameters into
  /// every rank's. On ranks other than 0, downhill's logger is set to warnings.
  static std::unique_ptr<DataParallel> join(UpdateEngine& engine);

  Place place() const noexcept { return {comm_->rank(), comm_->size()}; }
  /// Whether there is more than one rank (with one, a run is a plain run).
  bool active() const noexcept { return comm_->size() > 1; }
  /// Rank 0 writes checkpoints and the history.
  bool writes_files() const noexcept { return comm_->rank() == 0; }
  /// "2 processes (gloo)", for the run's first log line.
  std::string describe() const;

  /// Replaces `grads` (and `hvs`, when not empty) by their means over ranks, frozen
  /// parameters' left out; `flags` become sums over ranks, in the same collectives.
  void average(const UpdateEngine& engine, std::vector<at::Tensor>& grads,
               std::vector<at::Tensor>& hvs, StepFlags& flags);
  /// Sums `flags` over ranks alone (a step that completes no update).
  void agree(StepFlags& flags);
  /// Sums a pass's weighted monitors over ranks; every rank must report the same monitors.
  void agree(PassProgress& totals);
  /// Whether any rank's answer is true; std::runtime_error when only some say so and
  /// `must_be_unanimous` (e.g. "the checkpoint 'x' exists").
  bool any(bool answer, const std::string& must_be_unanimous);
  /// At the start of a run: shards the datasets (Dataset::shard), checks that every rank
  /// holds the same ones, and gives every rank rank 0's slice orders, positions and random
  /// generators (the global one and the datasets' own).
  void start_run(Dataset& train, Dataset* valid);

 private:
  explicit DataParallel(std::shared_ptr<Communicator> comm) : comm_(std::move(comm)) {}
  std::shared_ptr<Communicator> comm_;
  std::vector<at::Tensor> sent_;  // reused: the tensors one average() sends
};

}  // namespace downhill::detail
