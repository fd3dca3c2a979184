// RProp (iRprop−): per-element step sizes that grow while the gradient keeps its
// sign and shrink when it flips; a flipped gradient is zeroed for that update.
#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

template <typename V>
struct RProp {
  static constexpr const char* name = "RProp";
  static constexpr std::array<const char*, 2> state = {"grad_prev", "step"};
  /// Every step size starts at the learning rate.
  static double initial_value(size_t slot, const Options& options) {
    return slot == 1 ? options.learning_rate() : 0.0;
  }
  static void check_options(const Options& options, at::ScalarType dtype) {
    refuse::unless_finite_in(name, "rprop_increase", options.rprop_increase(), dtype);
    refuse::unless_finite_in(name, "rprop_max_step", options.rprop_max_step(), dtype);
  }

  V increase, decrease, min_step, max_step, zero, one;
  explicit RProp(const RuleContext& c)
      : increase(c.constant<V>(c.options().rprop_increase())),
        decrease(c.constant<V>(c.options().rprop_decrease())),
        min_step(c.constant<V>(c.options().rprop_min_step())),
        max_step(c.constant<V>(c.options().rprop_max_step())),
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
