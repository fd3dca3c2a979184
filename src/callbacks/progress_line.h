#pragma once
// The built-in callback that shows, on a terminal, one progress line for a pass or a
// validation longer than about a second (batches done/total, elapsed time, running loss),
// cleared before the next log line. Never when stderr is not a terminal. Internal.

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
  ProgressLine(const LoopState& loop, const Dataset& train, const Dataset& validation)
      : loop_(loop), train_(train), validation_(validation) {}
  ~ProgressLine() override;

  void on_pass_start(const RunView& run) override;
  void on_update(const RunView& run) override;
  void on_pass_end(const RunView&) override { clear(); }
  void on_validation_batch(const RunView& run) override;
  void on_validation(const RunView&) override { clear(); }
  void on_stop(const RunView&) override { clear(); }
  void on_run_end(const RunView&) override { clear(); }

 private:
  using Clock = std::chrono::steady_clock;
  // A line begins: `total` batches (0: not known yet).
  void begin(int64_t total);
  // Whether a line is due now: a second after it began, then every 200 ms.
  bool due();
  void show(const RunView& run, const char* what, int64_t done, double loss);
  void clear();

  const LoopState& loop_;  // its pass in progress has the running loss
  const Dataset& train_;
  const Dataset& validation_;
  int64_t total_ = 0;
  Clock::time_point start_, last_;
  double validation_loss_sum_ = 0.0;  // of the validation's batches so far
  bool enabled_ = false;
  bool shown_ = false;
};

}  // namespace downhill::detail
