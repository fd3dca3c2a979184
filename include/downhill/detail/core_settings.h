#pragma once
// The rows of the settings table that belong to no algorithm: one line per setting, from which
// Options' setters and getters (downhill/options.h) and the table's rows (src/settings_table.cpp)
// are both made. The algorithms' own hyperparameters (rms_halflife, beta1_halflife, ...) are
// declared in the algorithms' files, and listed after max_gradient_elem.
//
// X(type, name, default, scope, check, saved, agreed, meaning)
//   scope   SettingScope: kGroup settings may differ per parameter group
//   check   a downhill::checks function, or {} for none
//   saved   a checkpoint saves the value (so that a live change survives a resume)
//   agreed  data-parallel ranks must have the same value

#include <cstddef>

// clang-format off
#define DOWNHILL_CORE_SETTINGS(X)                                                                  \
  /* --- The update (docs/guide.md's mathematics) --- */                                          \
  X(std::string, algo, "rmsprop", kOptimizer, {}, false, true,                                     \
    "Algorithm used by downhill::minimize (build() takes it as an argument).")                     \
  X(double, learning_rate, 1e-4, kGroup, checks::positive(), true, true,                           \
    "Step size; > 0. ADADELTA ignores it.")                                                        \
  X(double, momentum, 0.0, kGroup, checks::interval(0, 1, true, false), true, true,                \
    "Momentum mu in [0, 1); 0 turns momentum off.")                                                \
  X(bool, nesterov, false, kGroup, {}, true, true,                                                 \
    "Nesterov-style momentum instead of regular momentum.")                                        \
  X(double, max_gradient_norm, 0.0, kGroup, checks::non_negative(), true, true,                    \
    "Rescale each parameter's gradient to at most this L2 norm; 0 = off.")                         \
  X(double, max_gradient_elem, 0.0, kGroup, checks::non_negative(), true, true,                    \
    "Clamp each gradient element to [-e, e]; 0 = off. Wins over max_gradient_norm.")               \
  X(double, weight_decay, 0.0, kGroup, checks::non_negative(), true, true,                         \
    "Decoupled weight decay lambda: the update gains lr*f(t)*lambda*p (p before the step; "        \
    "ADADELTA, which has no learning rate, f(t)*lambda*p), before momentum; >= 0.")                \
  X(double, max_gradient_global_norm, 0.0, kOptimizer, checks::non_negative(), true, true,         \
    "After per-element / per-parameter clipping, scale every gradient by min(1, c / ||g||), the "  \
    "norm taken over all parameters together; 0 = off.")                                          \
  X(Schedule, learning_rate_schedule, Schedule(), kGroup, {}, false, true,                         \
    "f(t), which multiplies the rule's update at update t (0 for the first); empty: f = 1. "       \
    "Each value must be finite and >= 0.")                                                         \
  X(int64_t, accumulate, 1, kOptimizer, checks::integer_at_least(1), false, true,                  \
    "One update per this many batches, from the mean of their gradients; >= 1.")                   \
  X(bool, fused, true, kGroup, {}, false, true,                                                    \
    "Use the fused single-pass CPU kernels where they apply; off, every update runs the "          \
    "tensor-op reference (for testing).")                                                          \
  /* --- The loop (docs/guide.md's loop) --- */                                                   \
  X(int64_t, patience, 5, kLoop, checks::integer_at_least(0), false, true,                         \
    "Validations without improvement tolerated before stopping; >= 0.")                            \
  X(int64_t, validate_every, 10, kLoop, checks::integer_at_least(1), false, true,                  \
    "Validate every this many passes; >= 1.")                                                      \
  X(double, min_improvement, 0.0, kLoop, checks::non_negative(), false, true,                      \
    "Relative improvement of the watched validation monitor (monitor) that counts as progress; "   \
    ">= 0.")                                                                                       \
  X(std::string, monitor, "loss", kLoop, names_a_monitor(), false, true,                           \
    "The validation monitor that decides improvement: the best parameters, patience and "          \
    "reduce on plateau (Lightning's EarlyStopping(monitor=...)).")                                 \
  X(std::string, monitor_mode, "min", kLoop, min_or_max(), false, true,                            \
    "\"min\": lower values of monitor are better; \"max\": higher ones (accuracy).")                \
  X(int64_t, plateau_patience, 0, kLoop, checks::integer_at_least(0), false, true,                 \
    "Reduce on plateau: after this many validations without improvement, multiply the "            \
    "learning rate by plateau_factor; 0 = off.")                                                   \
  X(double, plateau_factor, 0.1, kLoop, checks::interval(0, 1, false, false), false, true,         \
    "The factor of each plateau reduction; in (0, 1).")                                            \
  X(double, plateau_min_learning_rate, 0.0, kLoop, checks::non_negative(), false, true,            \
    "The learning rate that plateau reductions never go below; >= 0.")                             \
  X(int64_t, plateau_cooldown, 0, kLoop, checks::integer_at_least(0), false, true,                 \
    "Validations after a plateau reduction before validations without improvement count "          \
    "again; >= 0.")                                                                                \
  X(bool, monitor_gradients, false, kLoop, {}, false, true,                                        \
    "Report grad(NAME), the L2 norm of each raw gradient, among the monitors (and, with "          \
    "max_gradient_global_norm, grad_norm).")                                                       \
  X(int64_t, batch_size, 32, kLoop, {}, false, true,                                               \
    "Mini-batch size used when minimize() wraps tensors in a Dataset; <= 0 = one batch.")          \
  X(bool, full_batch, false, kLoop, {}, false, true,                                               \
    "One batch of everything: minimize() wraps tensors in one batch (batch_size ignored), and "   \
    "with no validation set each validation is the loss at the point the next update starts "     \
    "from, evaluated once for both, in the training phase.")                                       \
  X(std::optional<int64_t>, max_passes, std::nullopt, kLoop, checks::integer_at_least(1), false,   \
    true, "Stop after this many passes (unset: no limit); >= 1. Also named max_updates.")          \
  X(std::optional<int64_t>, max_steps, std::nullopt, kLoop, checks::integer_at_least(1), false,    \
    true, "Stop right after the update that brings update_count() to this many, even inside a "    \
    "pass (unset: no limit); skipped updates do not count; >= 1.")                                 \
  X(double, gradient_tolerance, 0.0, kLoop, checks::non_negative(), false, true,                   \
    "Stop after an update whose gradient's largest element in magnitude (||g||inf over every "     \
    "updated parameter, of the gradient the update used) is at most this; 0 = off.")              \
  X(double, loss_tolerance, 0.0, kLoop, checks::non_negative(), false, true,                       \
    "Stop after an update whose batch loss changed from the previous update's by at most this, "   \
    "relative: |f_prev - f| / max(|f_prev|, |f|, 1); 0 = off.")                                    \
  X(double, step_tolerance, 0.0, kLoop, checks::non_negative(), false, true,                       \
    "Stop after an update that changed no parameter element by more than this (||dp||inf); "       \
    "0 = off.")                                                                                    \
  X(std::optional<int64_t>, train_batches, std::nullopt, kLoop, checks::integer_at_least(1),       \
    false, true, "Batches per training pass when minimize() wraps the data (unset: all); >= 1.")   \
  X(std::optional<int64_t>, valid_batches, std::nullopt, kLoop, checks::integer_at_least(1),       \
    false, true, "Batches per validation pass when minimize() wraps the data (unset: all); >= 1.") \
  /* --- Reliability and files --- */                                                             \
  X(int64_t, max_nonfinite, 10, kLoop, checks::integer_at_least(1), false, true,                   \
    "Consecutive skipped (non-finite) updates after which the loop stops, restores the best "      \
    "parameters and throws DivergenceError; >= 1.")                                                \
  X(std::string, checkpoint, "", kRun, {}, false, true,                                            \
    "File the loop checkpoints to (empty: no checkpoints). Written atomically.")                   \
  X(int64_t, checkpoint_every, 1, kRun, checks::integer_at_least(1), false, true,                  \
    "Write the checkpoint every this many passes (and when the loop stops); >= 1.")                \
  X(bool, resume, false, kRun, resume_needs_checkpoint(), false, true,                             \
    "Continue from the checkpoint file, if it exists, when the loop starts.")                      \
  X(bool, resume_required, false, kRun, resume_needs_checkpoint(), false, true,                    \
    "Continue from the checkpoint file, which must exist: a missing one is an error (a path "     \
    "typo), not a fresh start.")                                                                   \
  X(std::string, history, "", kRun, {}, false, true,                                               \
    "File the loop writes one JSON object per line to, for each pass (empty: none).")             \
  /* --- Data parallel (docs/guide.md, "Scaling out") --- */                                      \
  X(bool, distributed, false, kDistributed, {}, false, true,                                       \
    "Data-parallel training in a process started by torchrun.")                                    \
  X(double, distributed_timeout, 60.0, kDistributed, checks::positive(), false, true,              \
    "Seconds a rank waits for the others, to join or in a collective, before it fails; > 0.")      \
  X(std::shared_ptr<const ProcessGroup>, process_group, nullptr, kDistributed, {}, false, true,    \
    "A c10d process group of your own (downhill/distributed.h) instead of torchrun's.")

// Other names of the settings above, kept so that code written for them still works:
// A(type, alias, name). The alias's typed setter and getter and set()/get() by its name read
// and write the named setting's one value; settings(), the log and messages show the setting
// under its own name (messages add the alias).
#define DOWNHILL_CORE_SETTING_ALIASES(A)                                                           \
  /* The seed's name for max_passes: it counts passes, not optimizer updates. */                   \
  A(std::optional<int64_t>, max_updates, max_passes)
// clang-format on

namespace downhill::detail::core {

/// The table's id of each setting above (they are declared first, in this order).
enum : std::size_t {
#define DOWNHILL_CORE_ID(type, name, ...) name,
  DOWNHILL_CORE_SETTINGS(DOWNHILL_CORE_ID)
#undef DOWNHILL_CORE_ID
      count
};

/// The last setting listed before the algorithms' hyperparameters in Options::settings().
inline constexpr std::size_t kLastBeforeHyperparameters = max_gradient_elem;

}  // namespace downhill::detail::core
