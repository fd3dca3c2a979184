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

void ProgressLine::begin(int64_t total) {
  total_ = total;
  start_ = last_ = Clock::now();
  enabled_ = stderr_is_terminal();
  shown_ = false;
}

bool ProgressLine::due() {
  if (!enabled_) return false;
  const auto now = Clock::now();
  if (now - start_ < std::chrono::seconds(1) || now - last_ < std::chrono::milliseconds(200)) {
    return false;
  }
  last_ = now;
  return true;
}

void ProgressLine::on_pass_start(const RunView&) { begin(train_.iteration_size()); }

void ProgressLine::on_update(const RunView& run) {
  if (due()) show(run, "", run.pass_steps, running_loss(loop_.counters.pass));
}

void ProgressLine::on_validation_batch(const RunView& run) {
  if (run.validation_steps == 1) {
    begin(validation_.iteration_size());
    validation_loss_sum_ = 0.0;
  }
  validation_loss_sum_ += run.monitors.contains("loss") ? run.monitors.at("loss") : 0.0;
  if (due()) {
    show(run, " validation", run.validation_steps,
         validation_loss_sum_ / static_cast<double>(run.validation_steps));
  }
}

void ProgressLine::show(const RunView& run, const char* what, int64_t done, double loss) {
  shown_ = true;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const char* name = run.optimizer.name().c_str();
  const auto batches = static_cast<long long>(done);
  if (total_ > 0) {
    std::fprintf(stderr, "\r\033[K%s%s %lld/%lld batches %.1fs loss=%f", name, what, batches,
                 static_cast<long long>(total_), elapsed, loss);
  } else {  // a range's first walk, whose length is not known yet
    std::fprintf(stderr, "\r\033[K%s%s %lld batches %.1fs loss=%f", name, what, batches, elapsed,
                 loss);
  }
  std::fflush(stderr);
}

void ProgressLine::clear() {
  if (!shown_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  shown_ = false;
}

}  // namespace downhill::detail
