#include <downhill/phase.h>

namespace downhill {

namespace {
// Per thread: two optimizers may run in two threads at once.
thread_local Phase current = Phase::kNone;
}  // namespace

Phase current_phase() noexcept { return current; }

const char* to_string(Phase phase) noexcept {
  switch (phase) {
    case Phase::kNone:
      return "none";
    case Phase::kTraining:
      return "training";
    case Phase::kValidation:
      return "validation";
  }
  return "?";
}

namespace detail {
PhaseScope::PhaseScope(Phase phase) noexcept : previous_(current) { current = phase; }
PhaseScope::~PhaseScope() { current = previous_; }
}  // namespace detail

}  // namespace downhill
