#pragma once
// Which evaluation a loss is called for: a training step or a validation.

namespace downhill {

/// What the optimizer is evaluating the loss for.
enum class Phase {
  kNone,        ///< not inside an optimizer's call (for example your own call of the loss)
  kTraining,    ///< a step(): the loss will be differentiated and the parameters updated
  kValidation,  ///< evaluate() or the loop's validation: no autograd graph, no update
};

/// The phase of the optimizer call in progress on this thread. A loss built on a
/// torch::nn module with Dropout or BatchNorm switches the module with it:
/// `model->train(downhill::current_phase() == downhill::Phase::kTraining);`
/// (docs/guide.md, "Training and validation phases").
Phase current_phase() noexcept;

/// The name of a phase: "none", "training" or "validation".
const char* to_string(Phase phase) noexcept;

namespace detail {
/// Sets the phase of this thread for its lifetime, then puts the previous one back.
class PhaseScope {
 public:
  explicit PhaseScope(Phase phase) noexcept;
  ~PhaseScope();
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  Phase previous_;
};
}  // namespace detail

}  // namespace downhill
