#pragma once
// The built-in callback that shows, on a terminal, one progress line for a pass longer than
// about a second (batches done/total, elapsed time, running loss), cleared before the pass's
// log line. Never when stderr is not a terminal. Internal.

#include <downhill/callbacks.h>

#include <chrono>
#include <cstdint>

namespace downhill {
class Dataset;
}

namespace downhill::detail {

class LoopState;

class ProgressLine final : public Callback {
 public:
  ProgressLine(const LoopState& loop, const Dataset& train) : loop_(loop), train_(train) {}
  ~ProgressLine() override;

  void on_pass_start(const RunView& run) override;
  void on_update(const RunView& run) override;
  void on_pass_end(const RunView&) override { clear(); }
  void on_stop(const RunView&) override { clear(); }
  void on_run_end(const RunView&) override { clear(); }

 private:
  using Clock = std::chrono::steady_clock;
  void clear();

  const LoopState& loop_;  // its pass in progress has the running loss
  const Dataset& train_;
  int64_t total_ = 0;  // batches in the pass
  Clock::time_point start_, last_;
  bool enabled_ = false;
  bool shown_ = false;
};

}  // namespace downhill::detail
