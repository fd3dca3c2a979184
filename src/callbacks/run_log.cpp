#include "callbacks/run_log.h"

#include <downhill/logging.h>
#include <downhill/optimizer.h>
#include <spdlog/spdlog.h>

#include <cmath>

namespace downhill::detail {

RunLog::RunLog() : log_(logger()) {}

void RunLog::on_validation(const RunView& run) {
  const double loss = run.monitors.at("loss");
  if (!std::isfinite(loss)) {
    log_->warn("validation {} loss is {}; it does not count as an improvement", run.validations,
               loss);
  }
  if (log_->should_log(spdlog::level::info)) {  // formatting monitors costs more than a tiny step
    log_->info("validation {} {}{}", run.validations, run.monitors.to_string(),
               run.improved ? " *" : "");
  }
}

void RunLog::on_pass_end(const RunView& run) {
  if (log_->should_log(spdlog::level::info)) {
    log_->info("{} {} {}", run.optimizer.name(), run.passes, run.monitors.to_string());
  }
}

void RunLog::on_stop(const RunView& run) {
  if (run.stop == StopReason::kInterrupted) log_->info("interrupted!");
}

}  // namespace downhill::detail
