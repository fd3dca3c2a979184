// ADAGRAD: G ← G + g²; u = lr·g / sqrt(G + ε).
#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

template <typename V>
struct Adagrad {
  static constexpr const char* name = "ADAGRAD";
  static constexpr std::array<const char*, 1> state = {"G"};
  static constexpr bool kScheduleInLearningRate = true;  // u = lr·g/√(G + ε)
  /// A sum of squares.
  static double state_minimum(size_t) { return 0.0; }
  static void check_options(const Options& options, at::ScalarType dtype) {
    refuse::unless_regularizer_normal(name, options, dtype);
  }

  V lr, eps;
  explicit Adagrad(const RuleContext& c)
      : lr(c.constant<V>(c.learning_rate())), eps(c.constant<V>(c.options().rms_regularizer())) {}

  V operator()(const V& g, std::array<V, 1>& s) const {
    auto& [sum_squares] = s;
    sum_squares = sum_squares + g * g;
    return g * lr / lanes::sqrt(sum_squares + eps);
  }
};

}  // namespace

DOWNHILL_DEFINE_BUILTIN(adagrad, Adagrad)

}  // namespace downhill::detail
