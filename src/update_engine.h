#pragma once
// The update engine: the parameters in their groups, each group's settings, the
// algorithm's rule and its state, the update counter, and the path of one update — the one
// read of each gradient (finiteness and norm), then the rule's chain over each parameter,
// judged and committed by the update guard (update_guard.h). Gradient accumulation is its
// AccumulationWindow (accumulation_window.h). Internal; Optimizer is its facade.

#include <downhill/detail/update_rule.h>
#include <downhill/named_tensors.h>
#include <downhill/options.h>
#include <downhill/params.h>

#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "accumulation_window.h"
#include "checkpoint_schema.h"
#include "update_guard.h"

namespace downhill::detail {

/// The engine's part of a checkpoint: what save() writes, and what read() returns checked
/// and commit() applies. Its fields are listed in engine_checkpoint.cpp.
struct EngineSnapshot {
  std::string algorithm;
  std::vector<std::string> names;              // the parameters'
  std::vector<int64_t> param_groups;           // each parameter's group; empty in format 1
  std::vector<int64_t> frozen_groups;          // the frozen groups' numbers
  std::vector<at::Tensor> values;              // the parameters
  std::vector<std::vector<at::Tensor>> state;  // the rule's slots per parameter
  std::vector<at::Tensor> velocity;            // undefined without momentum
  int64_t update_count = 0;
  std::optional<std::vector<Options>> group_options;  // absent in the oldest checkpoints
  WindowSnapshot window;  // a partly filled window of accumulated gradients
};

class UpdateEngine {
 public:
  /// Checks `options` and `params` (std::invalid_argument).
  UpdateEngine(std::string name, Params params, Options options, std::unique_ptr<UpdateRule> rule);

  const std::string& name() const noexcept { return name_; }
  const Params& params() const noexcept { return params_; }
  const Options& options() const noexcept { return group_options_[0]; }
  /// Group `group`'s settings; std::out_of_range for another number.
  const Options& group_options(size_t group) const;
  /// Changes the settings of every group (`group` empty) or of one, all or nothing
  /// (Optimizer::change_options).
  void change_options(std::optional<size_t> group, const GroupSettings& change,
                      bool dry_run = false);
  /// Settings for the next run (iterate(train, valid, settings)): checked now, applied by
  /// apply_run_settings() when that run starts, after a checkpoint it resumes is loaded.
  void set_run_settings(const GroupSettings& change);
  void apply_run_settings();
  /// The optimizer's options as the next run will have them (with the run's settings).
  Options planned_options() const;
  /// What reduce_learning_rate() did.
  struct Reduction {
    bool changed = false;      // some group's rate went down
    bool at_smallest = false;  // some group's rate is the smallest its settings accept
  };
  /// Multiplies every group's learning rate by `factor`, not below `floor` (reduce on
  /// plateau), and never to a rate the settings would refuse (0, or 0 once rounded to
  /// float32): such a group gets the smallest rate they accept, and stays there.
  Reduction reduce_learning_rate(double factor, double floor);
  const UpdateRule& rule() const noexcept { return *rule_; }

  /// Throws std::invalid_argument unless `tensors` has one tensor per parameter, each of
  /// its parameter's shape, dtype and device; `what` names them ("gradient").
  void check_tensors(const std::vector<at::Tensor>& tensors, const char* what) const;
  /// One update from checked gradients (and Hessian-vector products when the rule takes
  /// them). `already_clipped`: the gradients were clipped upstream (ESGD clips in the
  /// graph). Returns false, changing nothing, when any input is not finite.
  bool apply(const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& hvs,
             bool already_clipped, bool nesterov);
  /// Records a skipped update (logged as a warning); drops a partly filled window.
  void skip(const std::string& reason);
  /// What an update that searched along a line measured: at the point it ends at, the
  /// gradient's largest element in magnitude and its L2 norm; its largest parameter change;
  /// the loss where it started and where it ended.
  struct SearchedUpdate {
    double gradient_max = 0;
    double step_max = 0;
    double gradient_norm = 0;
    double loss_before = 0;
    double loss_after = 0;
  };
  /// Counts an update that an algorithm searching along a line (L-BFGS) wrote into the
  /// parameters itself, with its measures.
  void record_searched_update(const SearchedUpdate& update);
  /// The latest update's losses before and after, when it searched along a line (the loop's
  /// loss_tolerance compares them); empty after an update of the chain.
  const std::optional<std::pair<double, double>>& last_searched_losses() const noexcept {
    return last_searched_losses_;
  }
  /// Gradient accumulation: adds one batch's gradients to the window. Returns false while
  /// the window is not full; when it is, returns true with `grads` replaced by the mean of
  /// the window's gradients, and starts a new window. Always true for accumulate(1).
  bool add_to_window(std::vector<at::Tensor>& grads);
  /// Batches summed in the window so far.
  int64_t window_count() const noexcept { return window_.count(); }

  /// Copies checked `values` into the parameters.
  void set_params(const std::vector<at::Tensor>& values);
  NamedTensors state();
  std::vector<at::Tensor>& slots(size_t index);
  at::Tensor& velocity(size_t index);
  int64_t update_count() const noexcept { return update_count_; }
  /// Sets the counter (Optimizer::load_state, after its checks).
  void set_update_count(int64_t count) noexcept { update_count_ = count; }
  bool last_update_applied() const noexcept { return last_update_applied_; }
  /// With gradient_tolerance set, the latest applied update's largest gradient element in
  /// magnitude over the updated parameters (before clipping); with step_tolerance set, its
  /// largest parameter change. 0 when not measured.
  double last_gradient_max() const noexcept { return last_gradient_max_; }
  double last_step_max() const noexcept { return last_step_max_; }
  /// The L2 norm of the latest applied update's gradient over the updated parameters
  /// (before clipping); NaN before any update.
  double last_gradient_norm() const noexcept { return last_gradient_norm_; }
  const std::string& last_skip_reason() const noexcept { return last_skip_reason_; }

  /// Checkpoints (engine_checkpoint.cpp): save() writes the engine's fields; read() reads
  /// and checks them against this engine (the reader's refusals) and changes nothing;
  /// commit() applies what read() returned.
  void save(EntryWriter& writer);
  EngineSnapshot read(EntryReader& reader);
  void commit(EngineSnapshot&& snapshot);

 private:
  void ensure_state();
  // The settings that depend on the rule (ESGD, ADADELTA), for `options` of group 0.
  void check_rule_settings(const Options& options) const;
  // The factor of group `group`'s schedule at the next update, checked.
  double schedule_factor(size_t group) const;
  // std::invalid_argument when the group's lr·f(t) or lr·f(t)·λ, once rounded to float32, is
  // infinite (the schedule factors of this update are computed).
  void check_scheduled_constants(size_t group) const;
  // Each parameter's clipping factor, global-norm factor included, into clip_scales_.
  void compute_clip_scales(const std::vector<at::Tensor>& grads, bool already_clipped);
  // Replaces each group's settings in place (same count).
  void assign_group_options(std::vector<Options>&& options);
  // The engine's checkpoint fields (engine_checkpoint.cpp) read its members.
  friend struct EngineFields;
  // Each parameter's group, and the frozen groups' numbers: part of a checkpoint's identity.
  struct Grouping {
    std::vector<int64_t> param_groups;
    std::vector<int64_t> frozen_groups;
  };
  Grouping grouping() const;
  // The one read of each gradient: false (after skip()) when one is not finite.
  bool read_gradients(const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& hvs);
  // Refuses settings whose arithmetic degenerates for the dtypes of each group's parameters
  // (a learning rate infinite in float32, an ε a rule divides by that is 0, ...).
  void check_degenerate_settings(const std::vector<Options>& options) const;
  // Builds the rule's constants of every group that updates, for the update in progress
  // (UpdateRule::prepare, once per group and dtype).
  void prepare_rule_constants();
  // The context of group `group`'s part of the update in progress.
  UpdateContext update_context(size_t group) const;
  // Calls visit(index, chain, group) for each parameter that updates, in order; stops at
  // the first visit that returns false, and returns whether none did.
  template <typename Visit>
  bool for_each_update(bool already_clipped, bool nesterov, Visit&& visit);
  ParamTensors live_target(size_t index, const std::vector<at::Tensor>& grads,
                           const std::vector<at::Tensor>& hvs);
  // The tolerances' measures of the update in progress: the gradient's before its commit
  // (and the parameters, kept), the step's after.
  void measure_before_commit(const std::vector<at::Tensor>& grads);
  void measure_step();

  std::string name_;
  Params params_;
  std::vector<Options> group_options_;  // [0] is the optimizer's options
  std::unique_ptr<UpdateRule> rule_;
  // Per group: the rule's constants for the update in progress (made once, reused), and
  // whether it holds parameters of float and of double dtype.
  std::vector<std::unique_ptr<RuleConstants>> rule_constants_;
  std::vector<std::array<bool, 2>> group_dtypes_;
  std::vector<std::vector<at::Tensor>> state_;
  std::vector<at::Tensor> velocity_;
  std::vector<double> grad_norms_;  // members, so that an update allocates nothing
  std::vector<double> hv_norms_;
  UpdateGuard guard_;  // docs/architecture.md, "The guard"
  std::vector<double> clip_scales_;
  std::vector<double> schedule_factors_;  // per group, for the update in progress
  AccumulationWindow window_;
  GroupSettings run_settings_;  // for the next run; empty when none
  int64_t update_count_ = 0;
  bool last_update_applied_ = true;
  // The tolerances' measures (docs/guide.md, "Tolerances"), and for step_tolerance the
  // parameters before the update in progress (buffers kept between updates).
  double last_gradient_max_ = 0.0;
  double last_step_max_ = 0.0;
  double last_gradient_norm_ = std::numeric_limits<double>::quiet_NaN();
  std::vector<at::Tensor> params_before_;
  std::optional<std::pair<double, double>> last_searched_losses_;
  std::string last_skip_reason_;
};

}  // namespace downhill::detail
