#include <downhill/run_summary.h>

namespace downhill {

std::string_view to_string(StopReason reason) {
  switch (reason) {
    case StopReason::kNotStopped:
      return "not stopped";
    case StopReason::kPatience:
      return "patience";
    case StopReason::kMaxPasses:  // also kMaxUpdates, its seed's name
      return "max_passes";
    case StopReason::kMaxSteps:
      return "max_steps";
    case StopReason::kGradientTolerance:
      return "gradient_tolerance";
    case StopReason::kLossTolerance:
      return "loss_tolerance";
    case StopReason::kStepTolerance:
      return "step_tolerance";
    case StopReason::kInterrupted:
      return "interrupted";
    case StopReason::kDiverged:
      return "diverged";
    case StopReason::kLeft:
      return "left";
    case StopReason::kCallback:
      return "callback";
  }
  return "?";
}

}  // namespace downhill
