// ADADELTA: G ← γG + (1−γ)g²; u = g·sqrt(X + ε) / sqrt(G + ε) (old X);
// X ← γX + (1−γ)u². No learning rate.
#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

template <typename V>
struct Adadelta {
  static constexpr const char* name = "ADADELTA";
  static constexpr std::array<const char*, 2> state = {"G", "X"};
  /// Both are running means of squares.
  static double state_minimum(size_t) { return 0.0; }
  static constexpr bool kUsesLearningRate = false;  // weight decay is then λ·p
  static void check_options(const Options& options, at::ScalarType dtype) {
    refuse::unless_regularizer_normal(name, options, dtype);
  }

  V eps, gamma, rest;
  explicit Adadelta(const RuleContext& c)
      : eps(c.constant<V>(c.options().rms_regularizer())),
        gamma(c.constant<V>(ewma_weight(c.options().rms_halflife()))),
        rest(c.constant<V>(1 - ewma_weight(c.options().rms_halflife()))) {}

  V operator()(const V& g, std::array<V, 2>& s) const {
    auto& [grad_square, step_square] = s;
    grad_square = grad_square * gamma + rest * g * g;
    const V update = g * lanes::sqrt(step_square + eps) / lanes::sqrt(grad_square + eps);
    step_square = step_square * gamma + rest * update * update;
    return update;
  }
};

}  // namespace

DOWNHILL_DEFINE_BUILTIN(adadelta, Adadelta)

}  // namespace downhill::detail
