#pragma once
// What a run of the loop came to: its best validation, how long it ran, why it stopped.

#include <downhill/monitors.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

namespace downhill {

/// Why the loop stopped.
enum class StopReason {
  kNotStopped,   ///< no run yet, or the run is still going
  kPatience,     ///< `patience` validations without improvement
  kMaxPasses,    ///< `max_passes` passes ran (the setting also named `max_updates`)
  kInterrupted,  ///< Ctrl-C (SIGINT)
  kDiverged,     ///< `max_nonfinite` consecutive updates were skipped (DivergenceError)
  kLeft,         ///< the caller left the range (`break`, or an exception from the loss)
  kCallback,     ///< a callback asked (Callback::request_stop; RunSummary::stop_detail says why)
  kMaxSteps,     ///< `max_steps` optimizer updates were applied (Optimizer::update_count())
  kGradientTolerance,  ///< an update's gradient was within `gradient_tolerance` (its ||g||inf)
  kLossTolerance,      ///< an update's loss changed by at most `loss_tolerance`, relative
  kStepTolerance,      ///< an update changed no parameter element by more than `step_tolerance`
  /// kMaxPasses under its seed's name, kept for code written for it (`max_updates` counts
  /// passes).
  kMaxUpdates = kMaxPasses,
};

/// The name of a StopReason: "not stopped", "patience", "max_passes" (kMaxPasses, alias
/// kMaxUpdates), "max_steps", "interrupted", "diverged", "left", "callback",
/// "gradient_tolerance", "loss_tolerance" or "step_tolerance" (the setting that stopped it).
std::string_view to_string(StopReason reason);

/// The latest run of iterate() / minimize() on an optimizer (Optimizer::last_run()).
/// A run that continued a checkpoint counts the checkpointed run's passes and best too.
struct RunSummary {
  /// The best validation's monitors ("loss" first); empty when no validation was finite.
  Monitors best;
  /// The passes trained before the best validation (0: the parameters the run began with).
  int64_t best_pass = 0;
  /// The validations of the run, and the number of the best (1 for the first; 0: none).
  int64_t validations = 0;
  int64_t best_validation = 0;
  /// Training passes run, and updates applied by the optimizer (its update_count()).
  int64_t passes = 0;
  int64_t updates = 0;
  /// Calls of the loss (training steps and validations) and gradients computed (backward
  /// passes) by this optimizer since the run began, in this process: a run resumed from a
  /// checkpoint counts from its resume. (step() and evaluate() called by hand count too.)
  int64_t loss_evaluations = 0;
  int64_t gradient_evaluations = 0;
  /// The L2 norm, over every updated parameter, of the gradient that the optimizer's latest
  /// applied update used (before clipping); NaN before any update.
  double gradient_norm = std::numeric_limits<double>::quiet_NaN();
  /// Why the run stopped. The parameters are the best's after every stop but kLeft (a
  /// tolerance stop, as a limit's, ends with a closing validation, so the best can be the
  /// last step's), and the last step's after kLeft.
  StopReason stop = StopReason::kNotStopped;
  /// kCallback: the reason the callback gave; kDiverged: the DivergenceError's message;
  /// empty for the other stops.
  std::string stop_detail;
};

}  // namespace downhill
