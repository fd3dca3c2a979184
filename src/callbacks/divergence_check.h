#pragma once
// The built-in callback that counts consecutive skipped updates and, at max_nonfinite of
// them, stops the run (StopReason::kDiverged; the loop then throws DivergenceError). The
// count is the loop's, saved in checkpoints. Internal.

#include <downhill/callbacks.h>

namespace downhill::detail {

class CallbackList;
class LoopState;
class UpdateEngine;

class DivergenceCheck final : public Callback {
 public:
  DivergenceCheck(LoopState& loop, const UpdateEngine& engine, CallbackList& run)
      : loop_(loop), engine_(engine), run_(run) {}

  void on_update(const RunView& run) override;
  /// Logs the divergence as an error, once the progress line is cleared.
  void on_stop(const RunView& run) override;

 private:
  LoopState& loop_;
  const UpdateEngine& engine_;  // says why the last update was skipped
  CallbackList& run_;
};

}  // namespace downhill::detail
