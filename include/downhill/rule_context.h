#pragma once
// What a rule's update body is built from: the options, the update number and, for the
// tensor-op reference, the parameter's dtype.

#include <ATen/ATen.h>
#include <downhill/options.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace downhill {

/// γ(h) = exp(−ln 2 / h): the weight of the old value in an average with half-life h
/// updates (docs/guide.md, "The mathematics").
inline double ewma_weight(double halflife) { return std::exp(-std::log(2.0) / halflife); }

/// Handed to a rule's constructor once per update: the rule turns the settings into the
/// constants its body uses, in the body's value type V (see downhill/rule.h).
class RuleContext {
 public:
  /// `learning_rate_factor`: the schedule's factor f(t) when the rule takes it in its
  /// learning rate (`kScheduleInLearningRate`, downhill/rule.h), else 1.
  RuleContext(const Options& options, int64_t update, at::ScalarType dtype,
              double learning_rate_factor = 1.0)
      : options_(&options),
        update_(update),
        dtype_(dtype),
        learning_rate_factor_(learning_rate_factor) {}

  /// The optimizer's options (its learning rate, half-lives, ...).
  const Options& options() const noexcept { return *options_; }
  /// The number of this update: 1 for the first (Adam's t).
  int64_t update() const noexcept { return update_; }
  /// The learning rate of this update: the setting, times the schedule's factor f(t) for a
  /// rule that declares `kScheduleInLearningRate` (the product in double, so that constant()
  /// rounds it once).
  double learning_rate() const noexcept {
    return options_->learning_rate() * learning_rate_factor_;
  }
  /// `value` as a constant of the body's value type: rounded to float or double for the
  /// fused kernel, a 0-dim tensor of the parameter's dtype for the tensor reference (so
  /// both round alike). Compute in double first, then convert once.
  template <typename V>
  V constant(double value) const {
    if constexpr (std::is_same_v<V, at::Tensor>) {
      return at::scalar_tensor(value, at::TensorOptions().dtype(dtype_));
    } else {
      return static_cast<V>(value);
    }
  }

 private:
  const Options* options_;
  int64_t update_;
  at::ScalarType dtype_;
  double learning_rate_factor_;
};

}  // namespace downhill
