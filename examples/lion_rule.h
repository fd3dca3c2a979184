#pragma once
// Lion (Chen et al. 2023) written as a downhill rule: what examples/custom_rule.cpp registers
// and runs (and tests/user_rule_test.cpp holds to the formula). A rule is a class template over
// the value its body computes on: one float or double in the fused CPU kernel, a whole
// at::Tensor in the reference that runs on any device.

#include <downhill/rule.h>

#include <array>

// Lion's own settings, given to register_rule. Declared outside the rule template because the
// float, double and tensor versions of the rule must share one Settings type.
struct LionSettings {
  double beta1 = 0.9;   // weight of m in the update's direction
  double beta2 = 0.99;  // weight of m in its own running average
};

// Lion: u = lr·sign(β₁m + (1−β₁)g); m ← β₂m + (1−β₂)g.
template <typename V>
struct Lion {
  using Settings = LionSettings;
  static constexpr const char* name = "Lion";                 // what name() reports
  static constexpr std::array<const char*, 1> state = {"m"};  // state() lists "w.m"

  // Made once per update: every constant rounded once to V, so the fused kernel and the
  // tensor reference compute exactly the same numbers.
  V lr, beta1, rest1, beta2, rest2;
  Lion(const downhill::RuleContext& c, const Settings& s)
      : lr(c.constant<V>(c.learning_rate())),
        beta1(c.constant<V>(s.beta1)),
        rest1(c.constant<V>(1 - s.beta1)),
        beta2(c.constant<V>(s.beta2)),
        rest2(c.constant<V>(1 - s.beta2)) {}

  // g is the clipped gradient; the result u is the update (p ← p − u without momentum).
  V operator()(const V& g, std::array<V, 1>& s) const {
    auto& [m] = s;
    const V u = lr * downhill::lanes::sign(beta1 * m + rest1 * g);
    m = beta2 * m + rest2 * g;
    return u;
  }
};
