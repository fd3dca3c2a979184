#include "callbacks/history_recorder.h"

#include <downhill/optimizer.h>

#include <algorithm>

#include "loop_state.h"
#include "rank_group.h"

namespace downhill::detail {

void HistoryRecorder::on_run_start(const RunView& run) {
  const auto& options = run.optimizer.options();
  if (ranks_.writes_files()) file_.start(options.history(), run.resumed, run.passes);
  // A run resumed inside a pass validated before that pass, in the run that checkpointed.
  const auto& counters = loop_.counters;
  validated_this_pass_ = counters.pass.steps > 0 && counters.validations > 0 &&
                         counters.passes % options.validate_every() == 0;
  at_validation_ = false;
}

void HistoryRecorder::on_validation(const RunView& run) {
  if (run.closing) {
    record(run, nullptr);
    return;
  }
  validated_this_pass_ = true;
  at_validation_ = true;
}

void HistoryRecorder::on_pass_end(const RunView& run) {
  record(run, &run.monitors);
  validated_this_pass_ = false;
  at_validation_ = false;
}

void HistoryRecorder::on_stop(const RunView& run) {
  if (at_validation_) record(run, nullptr);  // the validation that ended the run
  at_validation_ = false;
}

void HistoryRecorder::record(const RunView& run, const Monitors* training) {
  const auto& options = run.optimizer.options();
  if (options.history().empty() || !ranks_.writes_files()) return;
  const auto& counters = loop_.counters;
  HistoryRecord record;
  record.pass = counters.passes;
  record.closing = training == nullptr;
  record.updates = run.optimizer.update_count();
  record.seconds = counters.seconds;
  const auto& schedule = options.learning_rate_schedule();
  record.learning_rate = options.learning_rate() *
                         (schedule ? schedule(std::max<int64_t>(record.updates - 1, 0)) : 1.0);
  record.train = training;
  if (validated_this_pass_ || record.closing) {
    record.validation = counters.validations;
    record.valid = &counters.last_validation;
    record.valid_pass = record.closing ? counters.passes : counters.passes - 1;
  }
  file_.append(record);
}

}  // namespace downhill::detail
