#pragma once
// The seam of data parallelism (docs/guide.md, "Scaling out"): what the update path and the
// loop ask of the ranks that train as one optimizer. A gradient reducer (a step's gradients
// into its update's, averaged over ranks with the step's flags) and the agreement of
// decisions (any rank's answer, sums of monitors, who writes files, sharding at a run's
// start). With one process it is SingleRank, which does nothing and talks to no one, so
// that step() and the loop read the same either way. Internal.

#include <ATen/ATen.h>
#include <downhill/distributed.h>

#include <memory>
#include <string>
#include <vector>

namespace downhill {
class Dataset;
}

namespace downhill::detail {

class UpdateEngine;
struct PassProgress;

/// What a step agrees on beside the gradients: counts over ranks.
struct StepFlags {
  double nonfinite_losses = 0;  // ranks whose loss was not finite
  double interrupts = 0;        // ranks that saw Ctrl-C
};

/// A step's average of gradients that runs while the backward pass computes them
/// (RankGroup::begin_overlapped). Armed hooks on the parameters' gradient accumulators give
/// each gradient as autograd computes it (leaving the parameters' .grad alone), and each
/// bucket is sent once its gradients are all in.
class OverlappedAverage {
 public:
  virtual ~OverlappedAverage() = default;
  /// Ends the average after the backward pass: `local` becomes this rank's gradients by
  /// parameter (undefined for a parameter the loss did not reach), `means` the update's
  /// (the averaged ones; the local one, or zeros, for a frozen parameter) and `flags` the
  /// sums over ranks.
  virtual void finish(std::vector<at::Tensor>& local, std::vector<at::Tensor>& means,
                      StepFlags& flags) = 0;
};

class RankGroup {
 public:
  /// SingleRank unless `engine`'s options ask for data parallelism over more than one rank;
  /// then the DataParallel group, joined and checked (DataParallel::join).
  static std::unique_ptr<RankGroup> join(UpdateEngine& engine);

  virtual ~RankGroup() = default;
  virtual Place place() const noexcept = 0;
  /// Whether this rank writes checkpoints and the history (rank 0).
  virtual bool writes_files() const noexcept = 0;
  /// Whether each step's collectives need every rank, so that a rank whose loss is not
  /// finite still computes what the others send (ESGD's products).
  virtual bool steps_together() const noexcept = 0;

  /// The gradient reducer. Folds this rank's step `grads` into the engine's accumulation
  /// window and, at a window's last batch, replaces them (and `hvs`) by the update's
  /// gradients, averaged over ranks; `flags` become sums over ranks. Returns whether an
  /// update is due: not when any rank's loss was not finite (the caller skips) nor inside
  /// a window.
  virtual bool reduce(UpdateEngine& engine, std::vector<at::Tensor>& grads,
                      std::vector<at::Tensor>& hvs, StepFlags& flags) = 0;
  /// Starts averaging a step's gradients during its backward pass, when that step's update
  /// averages over ranks and its gradients come from autograd into the parameters (more than
  /// one rank, a window of one batch, every updated parameter a leaf that requires grad): the
  /// average is announced with `flags` now, and the hooks armed until finish(). Null
  /// otherwise: the step computes its gradients, then calls reduce().
  virtual std::unique_ptr<OverlappedAverage> begin_overlapped(const UpdateEngine& /*engine*/,
                                                              const StepFlags& /*flags*/) {
    return nullptr;
  }
  /// Replaces `grads` (and `hvs`, when not empty) by their means over ranks (apply()).
  virtual void average(const UpdateEngine& engine, std::vector<at::Tensor>& grads,
                       std::vector<at::Tensor>& hvs) = 0;
  /// Why a step with a non-finite loss (on any rank, per `flags`) skips; `loss` is this
  /// rank's.
  virtual std::string nonfinite_loss(const StepFlags& flags, double loss) const = 0;

  /// Sums a pass's weighted monitors over ranks; every rank must report the same monitors.
  virtual void agree(PassProgress& totals) = 0;
  /// Whether any rank answers yes (`question` names it in errors).
  virtual bool any(bool answer, const std::string& question) = 0;
  /// As any(), and std::runtime_error when only some ranks say yes (e.g. "the checkpoint
  /// 'x' exists": every rank must see the same files).
  virtual bool unanimous(bool answer, const std::string& question) = 0;
  /// At the start of a run: shards the datasets and gives every rank rank 0's orders,
  /// positions and random generators.
  virtual void start_run(Dataset& train, Dataset* valid) = 0;
};

/// One process: every answer is its own, nothing is sent.
class SingleRank final : public RankGroup {
 public:
  Place place() const noexcept override { return {}; }
  bool writes_files() const noexcept override { return true; }
  bool steps_together() const noexcept override { return false; }
  bool reduce(UpdateEngine& engine, std::vector<at::Tensor>& grads, std::vector<at::Tensor>& hvs,
              StepFlags& flags) override;
  void average(const UpdateEngine&, std::vector<at::Tensor>&, std::vector<at::Tensor>&) override {}
  std::string nonfinite_loss(const StepFlags& flags, double loss) const override;
  void agree(PassProgress&) override {}
  bool any(bool answer, const std::string&) override { return answer; }
  bool unanimous(bool answer, const std::string&) override { return answer; }
  void start_run(Dataset&, Dataset*) override {}
};

}  // namespace downhill::detail
