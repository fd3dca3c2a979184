#include "callbacks/patience.h"

#include <downhill/logging.h>
#include <downhill/optimizer.h>
#include <spdlog/spdlog.h>

#include "callback_list.h"

namespace downhill::detail {

void Patience::on_validation(const RunView& run) {
  if (run.closing || run.stop != StopReason::kNotStopped) return;
  if (run.validations - run.best_validation <= run.optimizer.options().patience()) return;
  logger()->info("patience elapsed!");
  run_.request(StopReason::kPatience);
}

}  // namespace downhill::detail
