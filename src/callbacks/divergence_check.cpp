#include "callbacks/divergence_check.h"

#include <downhill/logging.h>
#include <downhill/optimizer.h>
#include <spdlog/spdlog.h>

#include <string>

#include "callback_list.h"
#include "loop_state.h"
#include "update_engine.h"

namespace downhill::detail {

void DivergenceCheck::on_update(const RunView& run) {
  auto& skipped = loop_.counters.consecutive_skipped;
  if (!run.skipped) {
    skipped = 0;
    return;
  }
  if (++skipped < run.optimizer.options().max_nonfinite()) return;
  run_.request(StopReason::kDiverged,
               "downhill: " + run.optimizer.name() + " diverged: " + std::to_string(skipped) +
                   " consecutive updates skipped, the last at pass " +
                   std::to_string(run.passes + 1) + ", batch " + std::to_string(run.pass_steps) +
                   " (" + engine_.last_skip_reason() + "); the best parameters were restored");
}

void DivergenceCheck::on_stop(const RunView& run) {
  if (run.stop == StopReason::kDiverged) logger()->error("{}", run.stop_detail);
}

}  // namespace downhill::detail
