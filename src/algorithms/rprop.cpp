// RProp (iRprop−): per-element step sizes that grow while the gradient keeps its
// sign and shrink when it flips; a flipped gradient is zeroed for that update.
#include <limits>

#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

// RProp's hyperparameters, in the settings table.
struct Hyperparameters {
  Setting<double> increase{{.name = "rprop_increase",
                            .default_value = 1.01,
                            .check = checks::at_least(1),
                            .doc = "RProp's step growth factor when the gradient keeps its sign; "
                                   ">= 1."}};
  Setting<double> decrease{{.name = "rprop_decrease",
                            .default_value = 0.99,
                            .check = checks::interval(0, 1, false, true),
                            .doc = "RProp's step shrink factor when the gradient flips sign; in "
                                   "(0, 1]."}};
  Setting<double> min_step{{.name = "rprop_min_step",
                            .default_value = 0.0,
                            .check = checks::non_negative(),
                            .doc = "RProp's smallest step; >= 0."}};
  Setting<double> max_step{{.name = "rprop_max_step",
                            .default_value = 100.0,
                            .check = at_least_min_step,
                            .doc = "RProp's largest step; >= rprop_min_step."}};

  static std::string at_least_min_step(const SettingValue& value, const Options& options);
};

const Hyperparameters& hyperparameters() {
  static const Hyperparameters declared;
  return declared;
}

std::string Hyperparameters::at_least_min_step(const SettingValue& value, const Options& options) {
  const double max_step = std::get<double>(value);
  const double min_step = hyperparameters().min_step(options);
  if (max_step >= min_step && !std::isinf(max_step)) return "";
  return "a finite number >= rprop_min_step (" + refuse::number(min_step) + ")";
}

template <typename V>
struct RProp {
  static constexpr const char* name = "RProp";
  static constexpr std::array<const char*, 2> state = {"grad_prev", "step"};
  /// Step sizes are not negative; the previous gradient may take any sign.
  static double state_minimum(size_t slot) {
    return slot == 1 ? 0.0 : -std::numeric_limits<double>::infinity();
  }
  static void declare_settings() { hyperparameters(); }
  /// Every step size starts at the learning rate.
  static double initial_value(size_t slot, const Options& options) {
    return slot == 1 ? options.learning_rate() : 0.0;
  }
  static void check_options(const Options& options, at::ScalarType dtype) {
    const auto& h = hyperparameters();
    refuse::unless_finite_in(name, "rprop_increase", h.increase(options), dtype);
    refuse::unless_finite_in(name, "rprop_max_step", h.max_step(options), dtype);
  }

  V increase, decrease, min_step, max_step, zero, one;
  explicit RProp(const RuleContext& c)
      : increase(c.constant<V>(hyperparameters().increase(c.options()))),
        decrease(c.constant<V>(hyperparameters().decrease(c.options()))),
        min_step(c.constant<V>(hyperparameters().min_step(c.options()))),
        max_step(c.constant<V>(hyperparameters().max_step(c.options()))),
        zero(c.constant<V>(0.0)),
        one(c.constant<V>(1.0)) {}

  V operator()(const V& g, std::array<V, 2>& s) const {
    auto& [grad_prev, step] = s;
    const V agreement = g * grad_prev;
    const V factor =
        lanes::select(agreement > zero, increase, lanes::select(agreement < zero, decrease, one));
    step = lanes::clamp(step * factor, min_step, max_step);
    const V kept = lanes::select(agreement < zero, zero, g);
    grad_prev = kept;
    return lanes::sign(kept) * step;
  }
};

}  // namespace

DOWNHILL_DEFINE_BUILTIN(rprop, RProp)

}  // namespace downhill::detail
