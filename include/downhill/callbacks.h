#pragma once
// Callbacks (docs/guide.md, "Callbacks"): code of your own that the loop runs at its events,
// with a read-only view of where the run stands, and that may ask the run to stop.

#include <downhill/monitors.h>
#include <downhill/run_summary.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace downhill {

class Optimizer;

namespace detail {
class CallbackList;
}

/// Where the run stands when a hook is called. It lives for the call only: copy what you keep.
struct RunView {
  /// The optimizer that runs, for advanced use (its options, change_options, place()).
  Optimizer& optimizer;
  /// Passes trained so far; the pass in progress is not counted until it ends.
  int64_t passes;
  /// Batches taken in the pass in progress (on_update: this one included; 0 between passes).
  int64_t pass_steps;
  /// Updates applied so far (Optimizer::update_count()).
  int64_t updates;
  /// Validations so far (on_validation: this one included).
  int64_t validations;
  /// The monitors the event just computed: the batch's (on_update, this rank's batch when
  /// data-parallel), the validation's (on_validation), the pass's training monitors averaged
  /// by samples (on_pass_end); empty for the other hooks.
  const Monitors& monitors;
  /// on_validation: whether this validation improved on the best (and is now the best).
  bool improved;
  /// on_validation: whether this is the closing validation of a max_passes or max_steps stop.
  bool closing;
  /// on_update: whether this batch's update was skipped (a NaN or an infinity).
  bool skipped;
  /// The best validation so far: its number (0: no finite one yet), the passes trained
  /// before it, and its monitors.
  int64_t best_validation;
  int64_t best_pass;
  const Monitors& best;
  /// Whether the run continues a checkpoint (loaded by hand, or by resume(true)).
  bool resumed;
  /// Wall-clock seconds since the run began, across resumes.
  double seconds;
  /// Why the run stops: kNotStopped until a stop was asked (by the loop, a built-in or a
  /// callback called earlier for this event); on_stop and on_run_end always know it.
  StopReason stop;
  /// The reason text given with a callback's stop (RunSummary::stop_detail); else empty.
  const std::string& stop_detail;
  /// on_validation_batch: the batches evaluated so far by the validation in progress (this one
  /// included); 0 for the other hooks.
  int64_t validation_steps = 0;
};

/// The base of a callback: override the hooks you need. Add one with
/// Optimizer::add_callback(); the loop calls the built-in callbacks first (progress line,
/// divergence, reduce on plateau, log lines, patience, history, checkpoints), then the
/// user's in the order they were added. A hook that throws leaves the run as an exception
/// from the loss does (StopReason::kLeft).
class Callback {
 public:
  virtual ~Callback() = default;

  /// The run has started: a checkpoint it continues is loaded, its datasets are in place,
  /// and its settings applied; nothing is validated or trained yet.
  virtual void on_run_start(const RunView& /*run*/) {}
  /// A validation has run (before the pass it precedes, or the closing one of a
  /// max_passes or max_steps stop); the best is updated.
  virtual void on_validation(const RunView& /*run*/) {}
  /// A batch of a validation was evaluated: run.monitors are its monitors (not yet averaged),
  /// run.validation_steps counts the validation's batches so far. Before on_validation.
  virtual void on_validation_batch(const RunView& /*run*/) {}
  /// A pass over the training data starts.
  virtual void on_pass_start(const RunView& /*run*/) {}
  /// A batch was trained: its update applied, skipped, or (with accumulate) summed.
  virtual void on_update(const RunView& /*run*/) {}
  /// A pass has ended, before the loop yields its item.
  virtual void on_pass_end(const RunView& /*run*/) {}
  /// The run stops by itself (run.stop says why), before the closing validation of a
  /// max_passes or max_steps stop and before the best parameters come back: the parameters
  /// are the last step's. Not called when the caller leaves the range (kLeft).
  virtual void on_stop(const RunView& /*run*/) {}
  /// The run has ended: last_run() is final and, unless it was left (kLeft), the best
  /// parameters are back. A hook that throws here is logged, not thrown.
  virtual void on_run_end(const RunView& /*run*/) {}

 protected:
  /// Asks the run to stop (StopReason::kCallback, with `reason` in the log and in
  /// last_run().stop_detail), from inside a hook. The first stop asked wins. Asked during a
  /// pass (on_pass_start, on_update), the pass is left where it stands, as by Ctrl-C; asked
  /// at a validation (on_validation_batch, on_validation), the validation finishes and the
  /// pass after it does not run; asked at a pass's end, the loop
  /// yields that pass and stops before the next.
  void request_stop(std::string reason) { stop_request_ = std::move(reason); }

 private:
  friend class detail::CallbackList;
  std::optional<std::string> stop_request_;
};

}  // namespace downhill
