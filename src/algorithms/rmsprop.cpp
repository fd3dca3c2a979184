// RMSProp, Graves' centred form: f ← γf + (1−γ)g; G ← γG + (1−γ)g²;
// u = lr·g / sqrt(G − f² + ε).
#include <limits>

#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

template <typename V>
struct RmsProp {
  static constexpr const char* name = "RMSProp";
  static constexpr std::array<const char*, 2> state = {"f", "G"};
  static constexpr bool kScheduleInLearningRate = true;  // u = lr·g/√(G − f² + ε)
  /// G is a running mean of squares; f, of gradients, may take any sign.
  static double state_minimum(size_t slot) {
    return slot == 1 ? 0.0 : -std::numeric_limits<double>::infinity();
  }
  static void check_options(const Options& options, at::ScalarType dtype) {
    refuse::unless_regularizer_normal(name, options, dtype);
  }

  V lr, eps, gamma, rest, zero;
  explicit RmsProp(const RuleContext& c)
      : lr(c.constant<V>(c.learning_rate())),
        eps(c.constant<V>(c.options().rms_regularizer())),
        gamma(c.constant<V>(ewma_weight(c.options().rms_halflife()))),
        rest(c.constant<V>(1 - ewma_weight(c.options().rms_halflife()))),
        zero(c.constant<V>(0.0)) {}

  V operator()(const V& g, std::array<V, 2>& s) const {
    auto& [mean, mean_square] = s;
    mean = mean * gamma + rest * g;
    mean_square = mean_square * gamma + rest * g * g;
    // G − f² ≥ 0 in exact arithmetic; the max keeps rounding from making it a NaN.
    const V variance = lanes::max(mean_square - mean * mean, zero);
    return g * lr / lanes::sqrt(variance + eps);
  }
};

}  // namespace

DOWNHILL_DEFINE_BUILTIN(rmsprop, RmsProp)

}  // namespace downhill::detail
