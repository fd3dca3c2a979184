#include <downhill/run_summary.h>

namespace downhill {

std::string_view to_string(StopReason reason) {
  switch (reason) {
    case StopReason::kNotStopped:
      return "not stopped";
    case StopReason::kPatience:
      return "patience";
    case StopReason::kMaxUpdates:
      return "max_updates";
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
