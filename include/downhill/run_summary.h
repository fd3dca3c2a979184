#pragma once
// What a run of the loop came to: its best validation, how long it ran, why it stopped.

#include <downhill/monitors.h>

#include <cstdint>
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
  /// kMaxPasses under its seed's name, kept for code written for it (`max_updates` counts
  /// passes).
  kMaxUpdates = kMaxPasses,
};

/// The name of a StopReason: "not stopped", "patience", "max_passes" (kMaxPasses, alias
/// kMaxUpdates), "max_steps", "interrupted", "diverged", "left" or "callback".
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
  /// Why the run stopped. The parameters are the best's after kPatience, kMaxPasses,
  /// kMaxSteps, kInterrupted, kDiverged and kCallback, and the last step's after kLeft.
  StopReason stop = StopReason::kNotStopped;
  /// kCallback: the reason the callback gave; kDiverged: the DivergenceError's message;
  /// empty for the other stops.
  std::string stop_detail;
};

}  // namespace downhill
