// Equilibrated SGD: D ← γD + (1−γ)(Hr)² with a fresh probe r ~ N(0, 1) each step;
// u = lr·g / (sqrt(D) + ε). Taking `hv` in its body is what makes step() compute Hr.
#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

// ESGD's own hyperparameter (its half-life and ε are shared with RMSProp's), in the settings
// table; Options::hv_method sets it by HvMethod or by name.
const Setting<int64_t>& hv_method() {
  static const Setting<int64_t> declared({.name = "hv_method",
                                          .default_value = int64_t{0},
                                          .scope = SettingScope::kOptimizer,
                                          .choices = {"rop", "lop", "grad"},
                                          .saved = false,
                                          .doc = "How ESGD computes Hessian-vector products: "
                                                 "rop, lop or grad."});
  return declared;
}

template <typename V>
struct Esgd {
  static constexpr const char* name = "ESGD";
  static constexpr std::array<const char*, 1> state = {"D"};
  static constexpr bool kScheduleInLearningRate = true;  // u = lr·g/(√D + ε)
  /// A running mean of squares.
  static double state_minimum(size_t) { return 0.0; }
  static void declare_settings() { hv_method(); }
  static void check_options(const Options& options, at::ScalarType dtype) {
    refuse::unless_regularizer_normal(name, options, dtype);
  }

  V lr, eps, gamma, rest;
  explicit Esgd(const RuleContext& c)
      : lr(c.constant<V>(c.learning_rate())),
        eps(c.constant<V>(c.options().rms_regularizer())),
        gamma(c.constant<V>(ewma_weight(c.options().rms_halflife()))),
        rest(c.constant<V>(1 - ewma_weight(c.options().rms_halflife()))) {}

  V operator()(const V& g, const V& hv, std::array<V, 1>& s) const {
    auto& [curvature] = s;
    curvature = curvature * gamma + rest * hv * hv;
    return g * lr / (lanes::sqrt(curvature) + eps);
  }
};

}  // namespace

DOWNHILL_DEFINE_BUILTIN(esgd, Esgd)

}  // namespace downhill::detail
