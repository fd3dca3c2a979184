#include "callbacks/reduce_on_plateau.h"

#include <downhill/logging.h>
#include <downhill/optimizer.h>
#include <spdlog/spdlog.h>

#include "loop_state.h"
#include "update_engine.h"

namespace downhill::detail {

void ReduceOnPlateau::on_validation(const RunView& run) {
  const auto& options = run.optimizer.options();
  if (options.plateau_patience() == 0) return;
  auto& counters = loop_.counters;
  counters.plateau_waiting = run.improved ? 0 : counters.plateau_waiting + 1;
  if (counters.plateau_cooldown > 0) {
    --counters.plateau_cooldown;
    counters.plateau_waiting = 0;
  }
  if (counters.plateau_waiting < options.plateau_patience()) return;
  counters.plateau_waiting = 0;
  counters.plateau_cooldown = options.plateau_cooldown();
  const auto reduction =
      engine_.reduce_learning_rate(options.plateau_factor(), options.plateau_min_learning_rate());
  if (reduction.changed) {
    logger()->info("validation {}: no improvement in {} validations; learning rate reduced to {}",
                   run.validations, options.plateau_patience(),
                   run.optimizer.options().learning_rate());
  }
  if (reduction.at_smallest && !told_smallest_) {
    told_smallest_ = true;
    logger()->info(
        "validation {}: the learning rate is the smallest the settings accept; it is reduced no "
        "further",
        run.validations);
  }
}

}  // namespace downhill::detail
