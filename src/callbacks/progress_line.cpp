#include "callbacks/progress_line.h"

#include <downhill/dataset.h>
#include <downhill/optimizer.h>
#include <unistd.h>

#include <cstdio>

#include "loop_state.h"
#include "weighted_mean.h"

namespace downhill::detail {

namespace {
bool stderr_is_terminal() {
  static const bool terminal = isatty(STDERR_FILENO) == 1;  // asked once, not every pass
  return terminal;
}
}  // namespace

ProgressLine::~ProgressLine() { clear(); }

void ProgressLine::on_pass_start(const RunView&) {
  total_ = train_.iteration_size();
  start_ = last_ = Clock::now();
  enabled_ = stderr_is_terminal();
  shown_ = false;
}

void ProgressLine::on_update(const RunView& run) {
  if (!enabled_) return;
  const auto now = Clock::now();
  if (now - start_ < std::chrono::seconds(1) || now - last_ < std::chrono::milliseconds(200)) {
    return;
  }
  last_ = now;
  shown_ = true;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  std::fprintf(stderr, "\r\033[K%s %lld/%lld batches %.1fs loss=%f", run.optimizer.name().c_str(),
               static_cast<long long>(run.pass_steps), static_cast<long long>(total_), elapsed,
               running_loss(loop_.counters.pass));
  std::fflush(stderr);
}

void ProgressLine::clear() {
  if (!shown_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  shown_ = false;
}

}  // namespace downhill::detail
