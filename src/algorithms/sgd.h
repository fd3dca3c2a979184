#pragma once
// SGD: u = lr·g. NAG is SGD with Nesterov momentum.

#include "algorithms/builtin.h"

namespace downhill::detail {

template <typename V>
struct Sgd {
  static constexpr const char* name = "SGD";
  static constexpr std::array<const char*, 0> state = {};
  static constexpr bool kScheduleInLearningRate = true;  // u = lr·g
  V lr;
  explicit Sgd(const RuleContext& c) : lr(c.constant<V>(c.learning_rate())) {}
  V operator()(const V& g, std::array<V, 0>& /*state*/) const { return g * lr; }
};

}  // namespace downhill::detail
