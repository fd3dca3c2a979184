// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"):
// u = lr·sign(β₁m + (1−β₁)g); m ← β₂m + (1−β₂)g; weight decay decoupled, as the paper's.
// β₁ and β₂ are Adam's settings (beta1_halflife, beta2_halflife, or Options::beta1/beta2),
// with the paper's defaults β₁ = 0.9, β₂ = 0.99 when they are left unset.
#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

template <typename V>
struct Lion {
  static constexpr const char* name = "Lion";
  static constexpr std::array<const char*, 1> state = {"m"};
  static constexpr bool kScheduleInLearningRate = true;  // u = lr·sign(c)

  V lr, beta1, rest1, beta2, rest2;
  explicit Lion(const RuleContext& c) {
    const double b1 = c.options().beta1();
    const double b2 = c.options().beta2();
    lr = c.constant<V>(c.learning_rate());
    beta1 = c.constant<V>(b1);
    rest1 = c.constant<V>(1 - b1);
    beta2 = c.constant<V>(b2);
    rest2 = c.constant<V>(1 - b2);
  }

  V operator()(const V& g, std::array<V, 1>& s) const {
    auto& [momentum] = s;
    const V u = lr * lanes::sign(beta1 * momentum + rest1 * g);
    momentum = beta2 * momentum + rest2 * g;
    return u;
  }
};

void lion_defaults(Options& options) {
  if (!options.is_set("beta1_halflife")) options.beta1(0.9);
  if (!options.is_set("beta2_halflife")) options.beta2(0.99);
}

}  // namespace

DOWNHILL_DEFINE_BUILTIN_WITH_DEFAULTS(lion, Lion, lion_defaults)

}  // namespace downhill::detail
