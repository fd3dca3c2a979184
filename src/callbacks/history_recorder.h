#pragma once
// The built-in callback that writes the history file (Options::history; docs/guide.md,
// "History and plots"): a record per pass, with the validation that ran just before it, and
// a closing record for the validation that ended the run. Data-parallel, rank 0 writes.
// Internal; the file itself is history.h's.

#include <downhill/callbacks.h>

#include "history.h"

namespace downhill::detail {

class LoopState;
class RankGroup;

class HistoryRecorder final : public Callback {
 public:
  HistoryRecorder(const LoopState& loop, const RankGroup& ranks) : loop_(loop), ranks_(ranks) {}

  void on_run_start(const RunView& run) override;
  void on_validation(const RunView& run) override;
  void on_update(const RunView&) override { at_validation_ = false; }
  void on_pass_end(const RunView& run) override;
  void on_stop(const RunView& run) override;

 private:
  // Appends the record of the pass just trained (`training`), or the closing one (null).
  void record(const RunView& run, const Monitors* training);

  const LoopState& loop_;
  const RankGroup& ranks_;
  HistoryFile file_;
  bool validated_this_pass_ = false;  // a validation ran before the pass in progress
  bool at_validation_ = false;        // the latest event was a validation not yet recorded
};

}  // namespace downhill::detail
