#pragma once
// The built-in callback of the loop's log lines (docs/guide.md, "Logging"): one per
// validation ("*" when it improved; a warning when its loss is not finite), one per pass
// ("ALGO N monitors"), and "interrupted!" at Ctrl-C. Internal.

#include <downhill/callbacks.h>

#include <memory>

namespace spdlog {
class logger;
}

namespace downhill::detail {

class RunLog final : public Callback {
 public:
  RunLog();

  void on_validation(const RunView& run) override;
  void on_pass_end(const RunView& run) override;
  void on_stop(const RunView& run) override;

 private:
  std::shared_ptr<spdlog::logger> log_;  // looked up once per run, not per pass
};

}  // namespace downhill::detail
