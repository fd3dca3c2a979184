#pragma once
// The built-in callback of reduce on plateau (docs/guide.md, "Reduce on plateau"), as
// torch.optim.lr_scheduler.ReduceLROnPlateau: validations without improvement are counted
// (not during a cooldown); at plateau_patience of them, every group's learning rate is
// multiplied by plateau_factor, not below plateau_min_learning_rate nor below the smallest rate
// the settings accept. Its counts are the
// loop's, saved in checkpoints. Internal.

#include <downhill/callbacks.h>

namespace downhill::detail {

class LoopState;
class UpdateEngine;

class ReduceOnPlateau final : public Callback {
 public:
  ReduceOnPlateau(LoopState& loop, UpdateEngine& engine) : loop_(loop), engine_(engine) {}

  void on_validation(const RunView& run) override;

 private:
  LoopState& loop_;
  UpdateEngine& engine_;
  bool told_smallest_ = false;  // the log says it once a run
};

}  // namespace downhill::detail
