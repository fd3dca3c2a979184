// Adam: m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
// u = lr·(m / (1−β₁ᵗ)) / (sqrt(v / (1−β₂ᵗ)) + ε), with β from half-lives. AdamW: the same
// rule with PyTorch's AdamW defaults.
#include <cmath>
#include <limits>

#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

// Adam's hyperparameters, in the settings table (Options::beta1 and beta2 set them from
// PyTorch's betas).
struct Hyperparameters {
  Setting<double> beta1_halflife{{.name = "beta1_halflife",
                                  .default_value = 7.0,
                                  .check = checks::positive(),
                                  .doc = "Half-life of Adam's first-moment average; > 0."}};
  Setting<double> beta2_halflife{{.name = "beta2_halflife",
                                  .default_value = 69.0,
                                  .check = checks::positive(),
                                  .doc = "Half-life of Adam's second-moment average; > 0."}};
};

const Hyperparameters& hyperparameters() {
  static const Hyperparameters declared;
  return declared;
}

// Refusals of settings Adam's rule cannot use, naming `algorithm` (Adam or AdamW).
void check_adam_options(const char* algorithm, const Options& options, at::ScalarType dtype) {
  const auto& h = hyperparameters();
  refuse::unless_regularizer_normal(algorithm, options, dtype);
  refuse::unless_weight_below_one(algorithm, "beta1_halflife", h.beta1_halflife(options));
  refuse::unless_weight_below_one(algorithm, "beta2_halflife", h.beta2_halflife(options));
}

template <typename V>
struct Adam {
  static constexpr const char* name = "Adam";
  static constexpr std::array<const char*, 2> state = {"m", "v"};
  static constexpr bool kScheduleInLearningRate = true;  // u = lr·m̂/(√v̂ + ε)
  /// v is a running mean of squares; m may take any sign.
  static double state_minimum(size_t slot) {
    return slot == 1 ? 0.0 : -std::numeric_limits<double>::infinity();
  }
  static void declare_settings() { hyperparameters(); }
  static void check_options(const Options& options, at::ScalarType dtype) {
    check_adam_options(name, options, dtype);
  }

  V lr, eps, beta1, rest1, beta2, rest2, correction1, correction2;
  explicit Adam(const RuleContext& c) {
    const double b1 = ewma_weight(hyperparameters().beta1_halflife(c.options()));
    const double b2 = ewma_weight(hyperparameters().beta2_halflife(c.options()));
    const double t = static_cast<double>(c.update());
    auto constant = [&](double value) { return c.constant<V>(value); };
    lr = constant(c.learning_rate());
    eps = constant(c.options().rms_regularizer());
    beta1 = constant(b1);
    rest1 = constant(1 - b1);
    beta2 = constant(b2);
    rest2 = constant(1 - b2);
    correction1 = constant(1 - std::pow(b1, t));
    correction2 = constant(1 - std::pow(b2, t));
  }

  V operator()(const V& g, std::array<V, 2>& s) const {
    auto& [mean, mean_square] = s;
    mean = mean * beta1 + rest1 * g;
    mean_square = mean_square * beta2 + rest2 * g * g;
    return mean / correction1 * lr / (lanes::sqrt(mean_square / correction2) + eps);
  }
};

// AdamW: Adam's rule (weight decay is always decoupled here), named as PyTorch names it and
// with torch.optim.AdamW's defaults for what the user leaves unset.
template <typename V>
struct AdamW : Adam<V> {
  static constexpr const char* name = "AdamW";
  using Adam<V>::Adam;
  static void check_options(const Options& options, at::ScalarType dtype) {
    check_adam_options(name, options, dtype);
  }
};

void adamw_defaults(Options& options) {
  default_to(options, "learning_rate", 1e-3);
  if (!options.is_set("beta1_halflife")) options.beta1(0.9);
  if (!options.is_set("beta2_halflife")) options.beta2(0.999);
  default_to(options, "rms_regularizer", 1e-8);
  default_to(options, "weight_decay", 1e-2);
}

}  // namespace

DOWNHILL_DEFINE_BUILTIN(adam, Adam)
DOWNHILL_DEFINE_BUILTIN_WITH_DEFAULTS(adamw, AdamW, adamw_defaults)

}  // namespace downhill::detail
