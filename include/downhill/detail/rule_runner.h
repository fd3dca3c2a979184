#pragma once
// A rule type (downhill/rule.h) as the engine's UpdateRule: its constants built once per
// group and update, then the update chain around it (downhill/detail/update_chain.h) run as
// the fused kernel, the tensor reference or on ranges for the update guard. Installed
// because a user's rule is instantiated here, in the user's code.

#include <ATen/ATen.h>
#include <downhill/detail/fused_kernel.h>
#include <downhill/detail/interval.h>
#include <downhill/detail/update_chain.h>
#include <downhill/detail/update_rule.h>
#include <downhill/options.h>
#include <downhill/rule_context.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace downhill::detail {

// ---- A rule as the engine sees it ----

/// A rule without settings of its own.
struct NoSettings {};

/// The settings a rule takes besides the options: its nested `Settings` type, if any.
template <typename RuleT>
struct RuleSettings {
  using type = NoSettings;
};
template <typename RuleT>
requires requires { typename RuleT::Settings; }
struct RuleSettings<RuleT> {
  using type = typename RuleT::Settings;
};

/// One group's rules for one update, per dtype: the element forms (fused kernel) and, when
/// `kBounded`, the interval forms (update guard), built by RuleRunner::prepare; the tensor
/// forms at their first use. (`Rule<float>` is a type argument too: GCC derives a class's
/// linkage from its type arguments only, and a rule in an anonymous namespace must make
/// this class internal as well.)
template <template <typename> class Rule, bool kBounded, typename ElementRule = Rule<float>>
struct PreparedRules final : RuleConstants {
  template <typename T>
  using BoundRule = std::conditional_t<kBounded, Rule<Interval<T>>, NoSettings>;  // or nothing

  std::optional<Rule<float>> float_rule;
  std::optional<BoundRule<float>> float_bound;
  std::optional<Rule<double>> double_rule;
  std::optional<BoundRule<double>> double_bound;
  std::array<std::optional<Rule<at::Tensor>>, 2> tensor_rules;  // float, double

  /// Builds the element and interval forms with `make`, and drops the last update's
  /// tensor form.
  template <typename T, typename Make>
  void prepare(Make&& make, std::optional<Rule<T>>& element, std::optional<BoundRule<T>>& bound) {
    element.emplace(make(T{}));
    if constexpr (kBounded) bound.emplace(make(Interval<T>{}));
    tensor_rules[std::is_same_v<T, float> ? 0 : 1].reset();
  }
};

/// UpdateRule for a rule template `Rule<V>` (downhill/rule.h describes what it provides).
template <template <typename> class Rule>
class RuleRunner final : public UpdateRule {
 public:
  using Settings = typename RuleSettings<Rule<float>>::type;

  explicit RuleRunner(Settings settings = {}) : settings_(std::move(settings)) {}

  std::string name() const override { return Rule<float>::name; }

  std::vector<std::string> state_names() const override {
    const auto& names = Rule<float>::state;
    return std::vector<std::string>(names.begin(), names.end());
  }

  at::Tensor initial_state(size_t slot, const at::Tensor& param,
                           const Options& options) const override {
    double value = 0.0;
    if constexpr (requires { Rule<float>::initial_value(slot, options); }) {
      value = Rule<float>::initial_value(slot, options);
    }
    return at::full_like(param, value, at::MemoryFormat::Contiguous);
  }

  double state_minimum(size_t slot) const override {
    if constexpr (requires { Rule<float>::state_minimum(slot); }) {
      return Rule<float>::state_minimum(slot);
    } else {
      return UpdateRule::state_minimum(slot);
    }
  }

  bool needs_hessian_vector_products() const override {
    return kTakesHessianVectorProducts<Rule<float>, float>;
  }

  bool uses_learning_rate() const override {
    if constexpr (requires { Rule<float>::kUsesLearningRate; }) {
      return Rule<float>::kUsesLearningRate;
    } else {
      return true;
    }
  }

  bool schedule_in_learning_rate() const override {
    if constexpr (requires { Rule<float>::kScheduleInLearningRate; }) {
      return Rule<float>::kScheduleInLearningRate;
    } else {
      return false;
    }
  }

  bool forces_nesterov() const override {
    if constexpr (requires { Rule<float>::kNesterov; }) {
      return Rule<float>::kNesterov;
    } else {
      return false;
    }
  }

  std::unique_ptr<RuleConstants> make_constants() const override {
    return std::make_unique<Constants>();
  }

  void prepare(const UpdateContext& group, at::ScalarType dtype,
               RuleConstants& constants) const override {
    auto& own = static_cast<Constants&>(constants);
    const RuleContext context(group.options, group.update, dtype, group.learning_rate_factor);
    auto make = [&](auto value) { return this->template make<decltype(value)>(context); };
    if (dtype == at::kFloat) {
      own.template prepare<float>(make, own.float_rule, own.float_bound);
    } else {
      own.template prepare<double>(make, own.double_rule, own.double_bound);
    }
  }

  bool updates_only_target() const override { return true; }

  void check_options(const Options& options, at::ScalarType dtype) const override {
    if constexpr (requires { Rule<float>::check_options(options, dtype); }) {
      Rule<float>::check_options(options, dtype);
    }
  }

  bool bound(const RuleConstants& constants, const ChainSettings& chain, at::ScalarType dtype,
             Range grad, Range hv, StateRanges& ranges) const override {
    if constexpr (kBounded) {
      const auto& own = static_cast<const Constants&>(constants);
      if (dtype == at::kFloat)
        return bound_as<float>(*own.float_bound, chain, dtype, grad, hv, ranges);
      return bound_as<double>(*own.double_bound, chain, dtype, grad, hv, ranges);
    } else {
      return false;
    }
  }

  void update(const UpdateContext& group, RuleConstants& constants, const ParamTensors& target,
              const ChainSettings& chain, bool fused) const override {
    auto& own = static_cast<Constants&>(constants);
    const auto dtype = target.param.scalar_type();
    if (fused && fused_eligible(target)) {
      if (dtype == at::kFloat) {
        compose_update_chain<float>(RuleStage<float, Rule<float>>{*own.float_rule}, chain, dtype,
                                    [&](const auto& c) { run_fused<float>(c, target); });
      } else {
        compose_update_chain<double>(RuleStage<double, Rule<double>>{*own.double_rule}, chain,
                                     dtype, [&](const auto& c) { run_fused<double>(c, target); });
      }
      return;
    }
    // The tensor form's constants are tensors: built at its first use in the update.
    auto& rule = own.tensor_rules[dtype == at::kFloat ? 0 : 1];
    if (!rule) {
      rule.emplace(make<at::Tensor>(
          RuleContext(group.options, group.update, dtype, group.learning_rate_factor)));
    }
    compose_update_chain<at::Tensor>(RuleStage<at::Tensor, Rule<at::Tensor>>{*rule}, chain, dtype,
                                     [&](const auto& c) { run_reference(c, target); });
  }

 private:
  // Whether the guard runs the rule's body on intervals: unless the rule says
  // `static constexpr bool kBounded = false` (a body using more than downhill/lanes.h).
  static constexpr bool kBounded = [] {
    if constexpr (requires { Rule<float>::kBounded; }) {
      return static_cast<bool>(Rule<float>::kBounded);
    } else {
      return true;
    }
  }();

  using Constants = PreparedRules<Rule, kBounded>;

  // Flattened: the chain's composition (a choice per place) and its run on intervals in one
  // function, so that the guard's fixed cost per parameter stays a few dozen operations.
  template <typename T>
  [[gnu::flatten]] static bool bound_as(const Rule<Interval<T>>& rule,
                                        const ChainSettings& settings, at::ScalarType dtype,
                                        Range grad, Range hv, StateRanges& ranges) {
    bool proven = false;
    compose_update_chain<Interval<T>>(
        RuleStage<Interval<T>, Rule<Interval<T>>>{rule}, settings, dtype,
        [&](const auto& chain) { proven = bound_chain(chain, grad, hv, ranges); });
    return proven;
  }

  // A range in sign-definite pieces: one, or [lo, 0] and [0, hi]. Run on each piece, the
  // body's g·g (and u·u of an update proportional to g) is a range >= 0, as the square is.
  static int split_by_sign(Range range, std::array<Range, 2>& pieces) {
    if (range.lo >= 0 || range.hi <= 0) {
      pieces[0] = range;
      return 1;
    }
    pieces[0] = {range.lo, 0.0};
    pieces[1] = {0.0, range.hi};
    return 2;
  }

  // Flattened: every interval operation inlined, so that the guard costs a small update
  // little (the calls would cost it about a tenth of its time).
  template <typename ChainT>
  [[gnu::flatten]] static bool bound_chain(const ChainT& chain, Range grad, Range hv,
                                           StateRanges& ranges) {
    using I = typename ChainT::State::value_type;
    if (ranges.slots.size() != ChainT::kSlots) return false;
    std::array<Range, 2> grads, hvs;
    const int grad_pieces = split_by_sign(grad, grads);
    const int hv_pieces = ChainT::kHessian ? split_by_sign(hv, hvs) : 1;
    if (!ChainT::kHessian) hvs[0] = {};
    I p_out, w_out;
    typename ChainT::State slots_out;
    bool first = true;
    for (int a = 0; a < grad_pieces; ++a) {
      for (int b = 0; b < hv_pieces; ++b) {
        typename ChainT::Values x;
        x.g = I::exact(grads[a].lo, grads[a].hi);
        x.hv = I::exact(hvs[b].lo, hvs[b].hi);
        x.p = I::exact(ranges.param.lo, ranges.param.hi);
        if constexpr (ChainT::kUsesVelocity) {
          x.w = I::exact(ranges.velocity.lo, ranges.velocity.hi);
        }
        for (size_t k = 0; k < ChainT::kSlots; ++k) {
          x.state[k] = I::exact(ranges.slots[k].lo, ranges.slots[k].hi);
        }
        chain(x);
        p_out = first ? x.p : hull(p_out, x.p);
        if constexpr (ChainT::kUsesVelocity) w_out = first ? x.w : hull(w_out, x.w);
        for (size_t k = 0; k < ChainT::kSlots; ++k) {
          slots_out[k] = first ? x.state[k] : hull(slots_out[k], x.state[k]);
        }
        first = false;
      }
    }
    if (!p_out.ok() || !w_out.ok()) return false;
    for (size_t k = 0; k < ChainT::kSlots; ++k) {
      if (!slots_out[k].ok()) return false;
    }
    ranges.param = {p_out.lo(), p_out.hi()};
    if constexpr (ChainT::kUsesVelocity) ranges.velocity = {w_out.lo(), w_out.hi()};
    for (size_t k = 0; k < ChainT::kSlots; ++k) {
      ranges.slots[k] = {slots_out[k].lo(), slots_out[k].hi()};
    }
    return true;
  }

  template <typename V>
  Rule<V> make(const RuleContext& context) const {
    if constexpr (std::is_same_v<Settings, NoSettings>) {
      return Rule<V>(context);
    } else {
      static_assert(std::is_constructible_v<Rule<V>, const RuleContext&, const Settings&>,
                    "a rule's Settings must be one type for every V: declare the struct "
                    "outside the rule template and name it inside with `using Settings = ...;`, "
                    "and give the rule a constructor (const RuleContext&, const Settings&)");
      return Rule<V>(context, settings_);
    }
  }

  Settings settings_;
};

}  // namespace downhill::detail
