#pragma once
// What the update engine asks of an algorithm (UpdateRule), and the plain structs it hands
// over: one parameter's tensors, how the chain treats its gradient, the ranges the update
// guard reasons with. RuleRunner (downhill/detail/rule_runner.h) implements it for a rule
// type; Optimizer subclasses have their own adapter.

#include <ATen/ATen.h>
#include <downhill/options.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace downhill::detail {

/// How the chain treats one parameter's gradient in this update.
struct ChainSettings {
  double grad_scale = 1.0;    // the norm-clipping factor, per parameter and global (1: none)
  double clip_elem = 0.0;     // > 0: clamp each element to ±clip_elem first
  double update_scale = 1.0;  // the schedule's factor f(t) on the rule's update (1 when the
                              // rule took it in its learning rate)
  double decay = 0.0;         // weight decay: the update gains decay·p
  double momentum = 0.0;
  bool nesterov = false;
};

/// One parameter's tensors for an update. Slots and velocity are the live state.
struct ParamTensors {
  size_t index = 0;  // in the optimizer's params()
  at::Tensor param;
  at::Tensor grad;
  at::Tensor hv;                   // undefined unless the rule uses it
  at::Tensor* velocity = nullptr;  // null when momentum is 0
  std::vector<at::Tensor>* slots = nullptr;
};

/// The closed range [lo, hi] the elements of a tensor lie in (the update guard's view).
struct Range {
  double lo = 0.0;
  double hi = 0.0;
};

/// The ranges of one parameter's values, velocity and state slots: before an update, what
/// the guard knows; after UpdateRule::bound, what the update writes.
struct StateRanges {
  Range param;
  Range velocity;
  std::vector<Range> slots;
};

/// What one parameter group's update is computed from.
struct UpdateContext {
  const Options& options;  // the group's settings
  int64_t update = 0;      // the number of this update: 1 for the first
  // The schedule's factor f(t) in the rule's learning rate (RuleContext::learning_rate), for
  // a rule that takes it there (UpdateRule::schedule_in_learning_rate); 1 otherwise.
  double learning_rate_factor = 1.0;
};

/// A rule's constants for one parameter group, which UpdateRule::prepare builds at each
/// update. The engine makes one per group (UpdateRule::make_constants) and reuses it, so
/// that an update allocates nothing for them.
class RuleConstants {
 public:
  virtual ~RuleConstants() = default;
};

/// Throws std::invalid_argument unless `names` (an algorithm's state, per parameter) are
/// distinct, not empty, and not "velocity" (momentum's, listed beside them by state()).
void check_state_names(const std::string& algorithm, const std::vector<std::string>& names);

/// What the update engine asks of an algorithm. Stateless: what an update needs comes in
/// through its arguments (the group's context and the constants prepared for it).
class UpdateRule {
 public:
  virtual ~UpdateRule() = default;
  /// The display name, e.g. "Adam".
  virtual std::string name() const = 0;
  /// The names of the rule's state tensors per parameter, e.g. {"m", "v"}.
  virtual std::vector<std::string> state_names() const = 0;
  virtual at::Tensor initial_state(size_t slot, const at::Tensor& param,
                                   const Options& options) const = 0;
  /// The least value state slot `slot` may hold (Adam's v: 0); a checkpoint holding less is
  /// refused. −∞ (the default): any finite value.
  virtual double state_minimum(size_t /*slot*/) const {
    return -std::numeric_limits<double>::infinity();
  }
  virtual bool needs_hessian_vector_products() const = 0;
  /// Whether the update is proportional to the learning rate (all but ADADELTA).
  virtual bool uses_learning_rate() const = 0;
  /// Whether the update is the context's learning rate times terms free of it (SGD, Adam, ...):
  /// then the schedule's factor f(t) enters that learning rate (lr·f(t), rounded once), and
  /// the chain does not scale the update again. Otherwise the chain multiplies by f(t).
  virtual bool schedule_in_learning_rate() const { return false; }
  /// Whether the rule always uses Nesterov momentum (NAG).
  virtual bool forces_nesterov() const = 0;
  /// Whether an update searches along a line, evaluating the loss several times (L-BFGS):
  /// Optimizer::step() then runs the search (lbfgs_search.h) instead of update(), and apply()
  /// is refused.
  virtual bool searches_line() const { return false; }
  /// A holder for one group's constants, made once per group.
  virtual std::unique_ptr<RuleConstants> make_constants() const {
    return std::make_unique<RuleConstants>();
  }
  /// Once per update, for each group and each dtype among its parameters, before bound()
  /// and update() of its parameters: builds the rule's constants for `context` into
  /// `constants`.
  virtual void prepare(const UpdateContext& /*context*/, at::ScalarType /*dtype*/,
                       RuleConstants& /*constants*/) const {}
  /// Runs the chain over one parameter of the group `context` describes: fused when `fused`
  /// and the tensors allow it. `constants` are the group's, prepared for this update.
  virtual void update(const UpdateContext& context, RuleConstants& constants,
                      const ParamTensors& target, const ChainSettings& chain, bool fused) const = 0;
  /// The update guard: given the ranges of the (clipped-to-be) gradient and Hessian-vector
  /// product and `ranges` of the parameter's tensors, whether update() provably writes finite
  /// values only; if so, `ranges` becomes the ranges of what it writes. `constants` are the
  /// group's, prepared for this update. False (the default) sends the parameter to the
  /// guard's checked path.
  virtual bool bound(const RuleConstants& /*constants*/, const ChainSettings& /*chain*/,
                     at::ScalarType /*dtype*/, Range /*grad*/, Range /*hv*/,
                     StateRanges& /*ranges*/) const {
    return false;
  }
  /// Whether update() writes the target's tensors only, so that it can run on copies.
  virtual bool updates_only_target() const { return false; }
  /// Throws std::invalid_argument for settings whose arithmetic degenerates for parameters
  /// of `dtype` (an ε the rule divides by that is 0 in that dtype, ...).
  virtual void check_options(const Options& /*options*/, at::ScalarType /*dtype*/) const {}
};

}  // namespace downhill::detail
