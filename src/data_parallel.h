#pragma once
// The RankGroup of more than one rank (docs/guide.md, "Scaling out"), on c10d: at build, the
// group is joined and every rank checked to hold the same optimizer and given rank 0's
// parameters; at each update, gradients are averaged across ranks with the step's flags
// agreed; at the start of a run, datasets are sharded and rank 0's orders and generators
// given to all; monitors and answers are summed across ranks. Internal.

#include <ATen/ATen.h>
#include <downhill/distributed.h>
#include <downhill/settings.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "communicator.h"
#include "rank_group.h"

namespace downhill {
class Dataset;
}
namespace torch::autograd {
struct Node;
struct FunctionPreHook;
}  // namespace torch::autograd

namespace downhill::detail {

class DataParallel final : public RankGroup {
 public:
  /// Null unless `engine`'s options ask for data parallelism. Otherwise joins the group;
  /// with more than one rank, checks that every rank built the same optimizer (a clear
  /// std::invalid_argument on every rank otherwise) and copies rank 0's parameters into
  /// every rank's. On ranks other than 0, downhill's logger is set to warnings.
  static std::unique_ptr<DataParallel> join(UpdateEngine& engine);

  Place place() const noexcept override { return {comm_->rank(), comm_->size()}; }
  bool writes_files() const noexcept override { return comm_->rank() == 0; }
  bool steps_together() const noexcept override { return true; }

  /// Every rank takes part in the same collectives, whatever its own loss: a window's last
  /// batch averages the window's mean with the flags, another batch sums the flags alone.
  bool reduce(UpdateEngine& engine, std::vector<at::Tensor>& grads, std::vector<at::Tensor>& hvs,
              StepFlags& flags) override;
  /// Overlapped with the backward pass; the buckets are filled in the reverse of the
  /// parameters' order at the first such step, then in the order their gradients arrived in
  /// it on rank 0 (given to every rank, so that every rank's buckets are the same).
  std::unique_ptr<OverlappedAverage> begin_overlapped(const UpdateEngine& engine,
                                                      const StepFlags& flags) override;
  /// Frozen parameters' gradients are left out.
  void average(const UpdateEngine& engine, std::vector<at::Tensor>& grads,
               std::vector<at::Tensor>& hvs) override;
  /// "non-finite loss on 1 of 2 ranks (here nan)".
  std::string nonfinite_loss(const StepFlags& flags, double loss) const override;
  void agree(PassProgress& totals) override;
  bool any(bool answer, const std::string& question) override;
  bool unanimous(bool answer, const std::string& question) override;
  /// Logs the run's first line (`data-parallel over 2 processes (gloo): ...`), shards the
  /// datasets (Dataset::shard), checks that every rank holds the same ones, and gives every
  /// rank rank 0's slice orders, positions and random generators (the global one and the
  /// datasets' own).
  void start_run(Dataset& train, Dataset* valid) override;

  ~DataParallel() override;

 private:
  class Average;      // the OverlappedAverage of one step
  struct HookTarget;  // what the gradient accumulators' hooks hand each gradient to
  explicit DataParallel(std::shared_ptr<Communicator> comm);
  // Arms a hook on the gradient accumulator of every parameter that requires grad, once;
  // false when an updated parameter is not a leaf that requires grad (then no step overlaps).
  bool arm_hooks(const UpdateEngine& engine);
  // The means of `grads` (and `hvs`) with `flags` summed, in the same collectives.
  void average_with(const UpdateEngine& engine, std::vector<at::Tensor>& grads,
                    std::vector<at::Tensor>& hvs, StepFlags& flags);
  // The number of ranks that answer yes.
  double count(bool answer, const std::string& question);
  // What every rank must agree on at an update beyond its build: the update's number and the
  // value at it of every setting that is a function (learning_rate_schedule, or a rule's own
  // schedule), per group; compared in the announcement of the gradients' average.
  const Agreement& update_agreement(const UpdateEngine& engine);
  std::shared_ptr<Communicator> comm_;
  std::vector<at::Tensor> sent_;              // reused: the tensors one average() sends
  std::vector<SettingId> function_settings_;  // the table's settings that are functions
  std::vector<std::pair<size_t, SettingId>> agreed_settings_;  // group and setting, per value
  Agreement agreement_;                                        // reused: this update's values
  // The overlapped steps' hooks (each accumulator kept alive, as DistributedDataParallel
  // keeps them, so that the hook stays on it), their target, and the buckets' order.
  std::shared_ptr<HookTarget> hook_target_;
  std::vector<
      std::pair<std::shared_ptr<torch::autograd::Node>, const torch::autograd::FunctionPreHook*>>
      hooks_;
  bool hooks_armed_ = false, hooks_usable_ = false;
  std::vector<size_t> bucket_order_;  // empty until the first overlapped step has run
};

}  // namespace downhill::detail
