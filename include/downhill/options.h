#pragma once
// Every setting of an optimizer and of its loop, as chainable setters.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace downhill {

class ProcessGroup;  // downhill/distributed.h

/// How ESGD computes Hessian-vector products (docs/guide.md's mathematics).
enum class HvMethod {
  kRop,   ///< Jacobian of the gradient times r (forward-mode style, via two vector-Jacobian
          ///< products)
  kLop,   ///< the vector-Jacobian product rᵀH
  kGrad,  ///< the gradient of (g · r)
};

/// The name of an HvMethod: "rop", "lop" or "grad".
std::string_view to_string(HvMethod method);

/// A learning-rate schedule: the factor f(t) that multiplies the update number t (0 for
/// the first). downhill/schedules.h has the usual ones.
using Schedule = std::function<double(int64_t update)>;

// Declares a setting: a chainable setter and a getter of the same name.
#define DOWNHILL_SETTING(Type, name, initial)           \
 public:                                                \
  Options& name(Type value) {                           \
    name##_ = std::move(value);                         \
    return *this;                                       \
  }                                                     \
  const Type& name() const noexcept { return name##_; } \
                                                        \
 private:                                               \
  Type name##_ = initial

// Declares an optional integer setting: unset by default.
#define DOWNHILL_OPTIONAL_SETTING(name)                                   \
 public:                                                                  \
  Options& name(int64_t value) {                                          \
    name##_ = value;                                                      \
    return *this;                                                         \
  }                                                                       \
  const std::optional<int64_t>& name() const noexcept { return name##_; } \
                                                                          \
 private:                                                                 \
  std::optional<int64_t> name##_

/// Every setting of an optimizer and of its loop, in the LibTorch style:
/// `Options().learning_rate(0.1).momentum(0.9)`. Each setter has a getter of the
/// same name. Values are checked by validate(), which build() calls.
class Options {
  // --- The algorithm (docs/guide.md's mathematics) ---
  /// Algorithm used by downhill::minimize (build() takes it as an argument).
  DOWNHILL_SETTING(std::string, algo, "rmsprop");
  /// Step size; > 0. ADADELTA ignores it.
  DOWNHILL_SETTING(double, learning_rate, 1e-4);
  /// Momentum μ in [0, 1); 0 turns momentum off.
  DOWNHILL_SETTING(double, momentum, 0.0);
  /// Nesterov-style momentum instead of regular momentum.
  DOWNHILL_SETTING(bool, nesterov, false);
  /// Rescale each parameter's gradient to at most this L2 norm; 0 = off.
  DOWNHILL_SETTING(double, max_gradient_norm, 0.0);
  /// Clamp each gradient element to [-e, e]; 0 = off. Wins over max_gradient_norm.
  DOWNHILL_SETTING(double, max_gradient_elem, 0.0);
  /// Half-life (in updates) of the running averages of RMSProp, ADADELTA and ESGD; > 0.
  DOWNHILL_SETTING(double, rms_halflife, 14.0);
  /// ε added to denominators; >= 0.
  DOWNHILL_SETTING(double, rms_regularizer, 1e-8);
  /// Half-life of Adam's first-moment average; > 0.
  DOWNHILL_SETTING(double, beta1_halflife, 7.0);
  /// Half-life of Adam's second-moment average; > 0.
  DOWNHILL_SETTING(double, beta2_halflife, 69.0);
  /// RProp's step growth factor when the gradient keeps its sign; >= 1.
  DOWNHILL_SETTING(double, rprop_increase, 1.01);
  /// RProp's step shrink factor when the gradient flips sign; in (0, 1].
  DOWNHILL_SETTING(double, rprop_decrease, 0.99);
  /// RProp's smallest step; >= 0.
  DOWNHILL_SETTING(double, rprop_min_step, 0.0);
  /// RProp's largest step; >= rprop_min_step.
  DOWNHILL_SETTING(double, rprop_max_step, 100.0);
  /// How ESGD computes Hessian-vector products.
  DOWNHILL_SETTING(HvMethod, hv_method, HvMethod::kRop);
  /// Decoupled weight decay λ: the update gains lr·f(t)·λ·p (p before the step; ADADELTA,
  /// which has no learning rate, f(t)·λ·p), before momentum; >= 0. With momentum 0,
  /// Adam with beta1(0.9), beta2(0.999) and this is torch.optim.AdamW.
  DOWNHILL_SETTING(double, weight_decay, 0.0);
  /// After per-element / per-parameter clipping, scale every gradient by min(1, c / ‖g‖₂),
  /// the norm taken over all parameters together (torch::nn::utils::clip_grad_norm_);
  /// 0 = off.
  DOWNHILL_SETTING(double, max_gradient_global_norm, 0.0);
  /// f(t), which multiplies the rule's update at update t (0 for the first); the rule's
  /// state sees the unscaled update. Empty (the default): f = 1. Each value must be
  /// finite and >= 0.
  DOWNHILL_SETTING(Schedule, learning_rate_schedule, {});
  /// One update per this many batches, from the mean of their gradients; >= 1. Not with
  /// ESGD, which clips its gradients inside each batch's graph.
  DOWNHILL_SETTING(int64_t, accumulate, 1);
  /// Use the fused single-pass CPU kernels where they apply (contiguous float/double
  /// CPU tensors). Off, every update runs the tensor-op reference; for testing.
  DOWNHILL_SETTING(bool, fused, true);

  // --- The loop (docs/guide.md's loop) ---
  /// Validations without improvement tolerated before stopping; >= 0.
  DOWNHILL_SETTING(int64_t, patience, 5);
  /// Validate every this many passes; >= 1.
  DOWNHILL_SETTING(int64_t, validate_every, 10);
  /// Relative improvement of the validation loss that counts as progress; >= 0.
  DOWNHILL_SETTING(double, min_improvement, 0.0);
  /// Reduce on plateau: after this many validations without improvement, multiply the
  /// learning rate by plateau_factor; 0 = off, else >= 1.
  DOWNHILL_SETTING(int64_t, plateau_patience, 0);
  /// The factor of each plateau reduction; in (0, 1).
  DOWNHILL_SETTING(double, plateau_factor, 0.1);
  /// The learning rate that plateau reductions never go below; >= 0.
  DOWNHILL_SETTING(double, plateau_min_learning_rate, 0.0);
  /// Validations after a plateau reduction before validations without improvement count
  /// again; >= 0.
  DOWNHILL_SETTING(int64_t, plateau_cooldown, 0);
  /// Report grad(NAME), the L2 norm of each raw gradient, among the monitors (and, with
  /// max_gradient_global_norm, grad_norm, the norm over all of them).
  DOWNHILL_SETTING(bool, monitor_gradients, false);
  /// Mini-batch size used when minimize() wraps tensors in a Dataset; <= 0 = one batch.
  DOWNHILL_SETTING(int64_t, batch_size, 32);
  /// Stop after this many passes (unset: no limit); >= 1.
  DOWNHILL_OPTIONAL_SETTING(max_updates);
  /// Batches per training pass when minimize() wraps the data (unset: all); >= 1.
  DOWNHILL_OPTIONAL_SETTING(train_batches);
  /// Batches per validation pass when minimize() wraps the data (unset: all); >= 1.
  DOWNHILL_OPTIONAL_SETTING(valid_batches);

  // --- Reliability ---
  /// Consecutive skipped (non-finite) updates after which the loop stops, restores
  /// the best parameters and throws DivergenceError; >= 1.
  DOWNHILL_SETTING(int64_t, max_nonfinite, 10);
  /// File the loop checkpoints to (empty: no checkpoints). Written atomically.
  DOWNHILL_SETTING(std::string, checkpoint, "");
  /// Write the checkpoint every this many passes (and when the loop stops); >= 1.
  DOWNHILL_SETTING(int64_t, checkpoint_every, 1);
  /// Continue from the checkpoint file, if it exists, when the loop starts.
  DOWNHILL_SETTING(bool, resume, false);
  /// File the loop writes one JSON object per line to, for each pass (empty: none); a
  /// resumed run appends with no duplicate and no gap (docs/guide.md, "History and plots").
  DOWNHILL_SETTING(std::string, history, "");

  // --- Data parallel (docs/guide.md, "Scaling out") ---
  /// Data-parallel training in a process started by torchrun: build() joins its group (the
  /// RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT variables; c10d's TCPStore and Gloo) and
  /// gives every rank rank 0's parameters; the loop shards tensor datasets and averages
  /// gradients across ranks before each update. World size 1 is a plain run.
  DOWNHILL_SETTING(bool, distributed, false);
  /// Seconds a rank waits for the others — to join, or in a collective — before it fails
  /// with std::runtime_error (a rank that died or hangs); > 0.
  DOWNHILL_SETTING(double, distributed_timeout, 60.0);
  /// A c10d process group of your own (downhill/distributed.h) instead of torchrun's; set,
  /// it implies distributed(true). Empty (the default): torchrun's.
  DOWNHILL_SETTING(std::shared_ptr<const ProcessGroup>, process_group, nullptr);

 public:
  /// Whether the optimizer trains data-parallel: distributed(true) or a process_group.
  bool data_parallel() const noexcept { return distributed_ || process_group_ != nullptr; }
  /// Parses "rop", "lop" or "grad" (any case); throws std::invalid_argument otherwise.
  Options& hv_method(std::string_view name);

  /// Adam's β₁ in PyTorch's terms: sets beta1_halflife to ln 2 / −ln β. Throws
  /// std::invalid_argument unless β is in (0, 1).
  Options& beta1(double beta);
  /// β₁ = exp(−ln 2 / beta1_halflife).
  double beta1() const;
  /// Adam's β₂ in PyTorch's terms: sets beta2_halflife to ln 2 / −ln β; β in (0, 1).
  Options& beta2(double beta);
  /// β₂ = exp(−ln 2 / beta2_halflife).
  double beta2() const;

  /// Every setting as (name, value) text, in declaration order, for logging.
  std::vector<std::pair<std::string, std::string>> settings() const;

  /// Throws std::invalid_argument naming the first setting that makes no sense,
  /// its value and the allowed range.
  void validate() const;
};

#undef DOWNHILL_SETTING
#undef DOWNHILL_OPTIONAL_SETTING

}  // namespace downhill
