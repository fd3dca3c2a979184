#pragma once
// The built-in callback of early stopping: the run stops (StopReason::kPatience) when more
// than `patience` validations have passed since the best. The closing validation of a
// max_passes or max_steps stop is not counted. Internal.

#include <downhill/callbacks.h>

namespace downhill::detail {

class CallbackList;

class Patience final : public Callback {
 public:
  explicit Patience(CallbackList& run) : run_(run) {}

  void on_validation(const RunView& run) override;

 private:
  CallbackList& run_;
};

}  // namespace downhill::detail
