#pragma once
// The callbacks docs/guide.md shows ("Callbacks"): a stopping rule of one's own and a logging
// callback. tests/callbacks_test.cpp holds them to what the guide says they do.

#include <downhill/downhill.h>

#include <ostream>
#include <sstream>
#include <string>
#include <utility>

// Stops the run at the first validation whose `monitor` is at or below `threshold`.
class StopAtThreshold : public downhill::Callback {
 public:
  StopAtThreshold(std::string monitor, double threshold)
      : monitor_(std::move(monitor)), threshold_(threshold) {}

  void on_validation(const downhill::RunView& run) override {
    if (run.monitors.at(monitor_) > threshold_) return;
    std::ostringstream reason;
    reason << monitor_ << " reached " << threshold_;
    request_stop(reason.str());
  }

 private:
  std::string monitor_;
  double threshold_;
};

// Writes one line per validation, and how the run ended, to `out`.
class ValidationLog : public downhill::Callback {
 public:
  explicit ValidationLog(std::ostream& out) : out_(out) {}

  void on_validation(const downhill::RunView& run) override {
    out_ << "validation " << run.validations << " after " << run.passes << " passes: loss "
         << run.monitors.at("loss") << (run.improved ? " (best)" : "") << '\n';
  }
  void on_run_end(const downhill::RunView& run) override {
    out_ << "stopped (" << downhill::to_string(run.stop) << ") with the best of validation "
         << run.best_validation << '\n';
  }

 private:
  std::ostream& out_;
};
