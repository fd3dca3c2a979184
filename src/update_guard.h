#pragma once
// The update guard (docs/architecture.md, "The guard"): no update writes a NaN or an
// infinity into a parameter or its state, and an update changes all its parameters or none.
// It keeps, per parameter, the ranges of its tensors as the last update left them; judges
// each parameter's update before any is written (proved finite by UpdateRule::bound from
// those ranges, or run on copies that are then read); then commits every judged update.
// Internal; the update engine owns one.

#include <downhill/detail/update_rule.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace downhill::detail {

/// One parameter's update as the guard runs it: the rule, its group's context and
/// constants (prepared for this update) and how the chain treats the gradient.
struct GuardedUpdate {
  const UpdateRule& rule;
  const UpdateContext& context;
  RuleConstants& constants;
  const ChainSettings& chain;
  bool fused = false;  // the group's `fused` setting
};

class UpdateGuard {
 public:
  /// Records for `param_count` parameters with `slot_count` state slots each; knows no
  /// ranges yet.
  void reset(size_t param_count, size_t slot_count);
  /// Judges the update of parameter `target.index` (`grad`, `hv`: the ranges of its gradient
  /// and Hessian-vector product) before any parameter is written. True when it is finite:
  /// proved (it will run in place) or run on copies kept for commit(). False when it is not:
  /// every judged update is dropped and failure() names what was not finite.
  bool judge(const GuardedUpdate& update, const ParamTensors& target, Range grad, Range hv,
             const std::string& param_name);
  /// Why the last judge() refused: "the update of parameter 'w' is not finite (...)".
  const std::string& failure() const noexcept { return failure_; }
  /// Writes the judged update of parameter `target.index` into its live tensors, once every
  /// parameter was judged finite.
  void commit(const GuardedUpdate& update, const ParamTensors& target);
  /// After every commit(): the ranges of what the update wrote, and which tensors (and
  /// versions) they describe.
  void record(size_t index, const at::Tensor& param, const at::Tensor& velocity,
              const std::vector<at::Tensor>& slots);

 private:
  // Whether the ranges known for the parameter still describe its tensors; if not, reads
  // them once.
  void refresh_ranges(const ParamTensors& target);
  // The checked path: the update on copies of the parameter's tensors, kept when every
  // value is finite.
  bool dry_run(const GuardedUpdate& update, const ParamTensors& live,
               const std::string& param_name);

  // Per parameter: the ranges of its tensors as the last update left them, and which
  // tensors (and versions) they describe; a change by anyone else shows in the version.
  struct Known {
    bool valid = false;
    StateRanges ranges;
    std::vector<const void*> tensors;  // param, velocity, slots
    std::vector<int64_t> versions;
  };
  std::vector<Known> known_;
  std::vector<StateRanges> next_ranges_;  // what the update in progress writes
  std::vector<char> proven_;              // per parameter: provably finite, updated in place
  struct Pending {                        // the checked path's results, not yet committed
    at::Tensor param, velocity;
    std::vector<at::Tensor> slots;
  };
  std::vector<Pending> pending_;
  std::string failure_;
};

}  // namespace downhill::detail
