#pragma once
// The callbacks of one run, in the order the loop calls them (the built-ins, then the
// user's), and the stop they ask for: the first asked wins. Internal.

#include <downhill/callbacks.h>
#include <downhill/run_summary.h>

#include <memory>
#include <string>
#include <vector>

namespace downhill::detail {

class CallbackList {
 public:
  using Hook = void (Callback::*)(const RunView&);

  void add(std::shared_ptr<Callback> callback) { callbacks_.push_back(std::move(callback)); }
  /// Calls `hook` of each callback in order. A stop asked by one is in `view` for those
  /// after it.
  void notify(Hook hook, RunView& view);
  /// As notify(), for a run that has ended already: an exception from a hook is logged,
  /// and the other callbacks are still called.
  void notify_quietly(Hook hook, RunView& view) noexcept;

  /// Asks the run to stop, unless a stop was asked already; returns whether it counts.
  bool request(StopReason reason, std::string detail = {});
  StopReason stop() const noexcept { return stop_; }
  bool stopping() const noexcept { return stop_ != StopReason::kNotStopped; }
  /// The reason text of a callback's stop, or the message of a divergence.
  const std::string& stop_detail() const noexcept { return stop_detail_; }

 private:
  // A stop the callback asked for during its hook, taken over as the run's when first.
  void take_request(Callback& callback);

  std::vector<std::shared_ptr<Callback>> callbacks_;
  StopReason stop_ = StopReason::kNotStopped;
  std::string stop_detail_;
  RunView* current_ = nullptr;  // the view of the hooks being called
};

}  // namespace downhill::detail
