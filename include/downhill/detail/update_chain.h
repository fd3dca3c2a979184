#pragma once
// The update chain around a rule — element clipping → norm scaling → the rule → schedule and
// weight decay → the step (momentum) — as peer stages, each one body run on three kinds of
// value V: one element (float or double, the fused CPU kernel, downhill/detail/fused_kernel.h),
// a whole tensor (at::Tensor, the reference) and a range of values (Interval<T>, the update
// guard). compose_update_chain() picks each place's stage from a group's ChainSettings.
// Installed because a user's rule is instantiated in the user's code (downhill/rule.h).

#include <ATen/ATen.h>
#include <downhill/detail/interval.h>
#include <downhill/detail/update_rule.h>
#include <downhill/lanes.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>

namespace downhill::detail {

/// What one element (or tensor, or range) carries through the chain. Every stage reads and
/// writes these. A stage replaces g, hv and u (x.g = ...: for tensors they may be the caller's)
/// and may write p, w and the state in place (x.p -= x.u: for tensors, the live ones).
template <typename V, size_t kSlots>
struct Lane {
  V g{};   // the gradient, clipped by the gradient stages
  V hv{};  // the Hessian-vector product (0, or undefined, unless the rule takes it)
  V u{};   // the update: the rule's, then scaled and decayed
  V p{};   // the parameter
  V w{};   // the velocity (unused without momentum)
  std::array<V, kSlots> state{};  // the rule's state
};

/// `value` as a constant of the chain's value type: rounded to float or double (or to T's
/// range, for Interval<T>), or a 0-dim tensor of `dtype`, so that every path rounds alike
/// (RuleContext::constant does the same for a rule).
template <typename V>
V chain_constant(double value, at::ScalarType dtype) {
  if constexpr (std::is_same_v<V, at::Tensor>) {
    return at::scalar_tensor(value, at::TensorOptions().dtype(dtype));
  } else {
    return static_cast<V>(value);
  }
}

/// `scale` as two factors of T's normal range whose product is `scale` (the second an
/// exact power of two, 1 when `scale` alone is normal in T), so that multiplying by one then
/// the other rounds once, as multiplying by the exact scale would. One factor alone would
/// fall below T's normal range, losing digits, for gradients near T's largest value; or,
/// for a factor beyond T's largest value (a schedule's f(t) on a float32 update), be
/// infinite where the product is not.
template <typename T>
std::pair<T, T> split_scale(double scale) {
  constexpr int kTailExponent = std::numeric_limits<T>::min_exponent + 8;  // still normal
  const double tail = std::ldexp(1.0, kTailExponent);
  if (scale == 0 || !std::isfinite(scale)) return {static_cast<T>(scale), T(1)};
  if (scale < tail) return {static_cast<T>(scale / tail), static_cast<T>(tail)};
  if (scale <= static_cast<double>(std::numeric_limits<T>::max())) {
    return {static_cast<T>(scale), T(1)};
  }
  // The largest power of two below T's largest value: the first factor is then at least 2,
  // so that it never makes the product smaller than the update before its tail.
  const double head = std::ldexp(1.0, std::numeric_limits<T>::max_exponent - 1);
  return {static_cast<T>(scale / head), static_cast<T>(head)};
}

/// split_scale for a parameter of `dtype` (float or double), as doubles.
inline std::pair<double, double> split_scale(at::ScalarType dtype, double scale) {
  if (dtype == at::kFloat) {
    const auto [factor, tail] = split_scale<float>(scale);
    return {factor, tail};
  }
  return split_scale<double>(scale);
}

// ---- The stages ----
//
// Their bodies are always inlined into the chain: the fused kernel vectorizes them as one
// loop body, and the guard's run on ranges stays one function (a call per stage costs a small
// update about a tenth of its time).
//
// A stage is a template S<V> with
//   - static bool applies(const ChainSettings&): whether it takes its place in the chain
//     (the first alternative of a place that applies does; the last when none before it);
//   - a constructor (const ChainSettings&, at::ScalarType dtype) making its constants with
//     chain_constant<V>;
//   - template <size_t N> void operator()(Lane<V, N>&) const: its body, written once;
//   - optionally static constexpr bool kAlways (chosen for this V whatever the settings)
//     and kUsesVelocity (the chain reads and writes the velocity).

/// Clipping by element: g limited to [−c, c].
template <typename V>
struct ClipElements {
  V low, high;
  static bool applies(const ChainSettings& settings) { return settings.clip_elem > 0; }
  ClipElements(const ChainSettings& settings, at::ScalarType dtype)
      : low(chain_constant<V>(-settings.clip_elem, dtype)),
        high(chain_constant<V>(settings.clip_elem, dtype)) {}
  /// The clipped gradient (also for gradients in an autograd graph, hessian.cpp).
  [[gnu::always_inline]] V operator()(const V& g) const { return lanes::clamp(g, low, high); }
  template <size_t N>
  [[gnu::always_inline]] void operator()(Lane<V, N>& x) const {
    x.g = (*this)(x.g);
  }
};

/// Clipping by norm: g times the factor min(1, c / ‖g‖) (times the global-norm factor), as
/// two factors (split_scale).
template <typename V>
struct ScaleGradient {
  // The element and interval forms always multiply (by 1 when nothing clips: the kernel is
  // bound by memory, and the guard's ranges stay as they were); the tensor form leaves a
  // gradient that is not scaled as it is, one temporary less per update, same values.
  static constexpr bool kAlways = !std::is_same_v<V, at::Tensor>;
  V scale, tail;
  static bool applies(const ChainSettings& settings) { return settings.grad_scale != 1.0; }
  ScaleGradient(const ChainSettings& settings, at::ScalarType dtype) {
    const auto [factor, rest] = split_scale(dtype, settings.grad_scale);
    scale = chain_constant<V>(factor, dtype);
    tail = chain_constant<V>(rest, dtype);
  }
  /// A factor given as `scale` · `tail` (hessian.cpp: a factor in the autograd graph).
  ScaleGradient(V scale_factor, V tail_factor)
      : scale(std::move(scale_factor)), tail(std::move(tail_factor)) {}
  [[gnu::always_inline]] V operator()(const V& g) const { return g * scale * tail; }
  template <size_t N>
  [[gnu::always_inline]] void operator()(Lane<V, N>& x) const {
    x.g = (*this)(x.g);
  }
};

/// The schedule's factor and decoupled weight decay: u·f(t) + d·p, with d = lr·f(t)·λ
/// and p the parameter before the step. f(t) is 1 here for a rule that took it in its
/// learning rate; otherwise two factors (split_scale), so that a factor beyond the dtype's
/// range scales a small update to a finite one.
template <typename V>
struct AdjustUpdate {
  V scale, tail, decay;
  bool has_tail = false;  // tail != 1: the tensor form then multiplies by it too
  static bool applies(const ChainSettings& settings) {
    return settings.update_scale != 1.0 || settings.decay != 0.0;
  }
  AdjustUpdate(const ChainSettings& settings, at::ScalarType dtype)
      : decay(chain_constant<V>(settings.decay, dtype)) {
    const auto [factor, rest] = split_scale(dtype, settings.update_scale);
    scale = chain_constant<V>(factor, dtype);
    tail = chain_constant<V>(rest, dtype);
    has_tail = rest != 1.0;
  }
  template <size_t N>
  [[gnu::always_inline]] void operator()(Lane<V, N>& x) const {
    if constexpr (std::is_same_v<V, at::Tensor>) {
      x.u = (has_tail ? x.u * scale * tail : x.u * scale) + decay * x.p;
    } else {
      x.u = x.u * scale * tail + decay * x.p;
    }
  }
};

// The steps write p and w with compound assignments: for elements and ranges the same
// arithmetic as p = p − u, and for tensors in place (sub_, mul_, add_), into the live
// parameter and velocity, with no new tensor to copy back.

/// No momentum: p ← p − u.
template <typename V>
struct PlainStep {
  static bool applies(const ChainSettings&) { return true; }
  PlainStep(const ChainSettings&, at::ScalarType) {}
  template <size_t N>
  [[gnu::always_inline]] void operator()(Lane<V, N>& x) const {
    x.p -= x.u;
  }
};

/// Momentum: w ← μw − u; p ← p + w.
template <typename V>
struct MomentumStep {
  static constexpr bool kUsesVelocity = true;
  V mu;
  static bool applies(const ChainSettings& settings) { return settings.momentum != 0; }
  MomentumStep(const ChainSettings& settings, at::ScalarType dtype)
      : mu(chain_constant<V>(settings.momentum, dtype)) {}
  template <size_t N>
  [[gnu::always_inline]] void operator()(Lane<V, N>& x) const {
    x.w *= mu;
    x.w -= x.u;
    x.p += x.w;
  }
};

/// Nesterov momentum, in the form that needs no look-ahead gradient:
/// w ← μ²w − (1+μ)u; p ← p + w.
template <typename V>
struct NesterovStep {
  static constexpr bool kUsesVelocity = true;
  V mu_squared, one_plus_mu;
  static bool applies(const ChainSettings& settings) {
    return settings.momentum != 0 && settings.nesterov;
  }
  NesterovStep(const ChainSettings& settings, at::ScalarType dtype)
      : mu_squared(chain_constant<V>(settings.momentum * settings.momentum, dtype)),
        one_plus_mu(chain_constant<V>(1.0 + settings.momentum, dtype)) {}
  template <size_t N>
  [[gnu::always_inline]] void operator()(Lane<V, N>& x) const {
    x.w *= mu_squared;
    // (1+μ)·u first, then one subtraction: for tensors not sub_(u, alpha), which ATen may
    // compute as w − alpha·u with one FMA rounding.
    x.w -= one_plus_mu * x.u;
    x.p += x.w;
  }
};

/// The number of state tensors a rule keeps per parameter.
template <typename RuleT>
inline constexpr size_t kStateSize = std::tuple_size_v<std::decay_t<decltype(RuleT::state)>>;

/// Whether a rule's body takes the Hessian-vector product: u = rule(g, hv, state).
template <typename RuleT, typename V>
inline constexpr bool kTakesHessianVectorProducts =
    std::is_invocable_v<const RuleT&, const V&, const V&, std::array<V, kStateSize<RuleT>>&>;

/// The rule's place in the chain: u = rule(g, state), or rule(g, hv, state). The rule is any
/// type with a `state` array of names and that body (downhill/rule.h): a rule built for
/// this update, or an Optimizer subclass's compute_update seen as one.
template <typename V, typename RuleT>
struct RuleStage {
  static constexpr size_t kStateSize = detail::kStateSize<RuleT>;
  static constexpr bool kTakesHessianVectorProducts = detail::kTakesHessianVectorProducts<RuleT, V>;
  RuleT rule;
  template <size_t N>
  [[gnu::always_inline]] void operator()(Lane<V, N>& x) const {
    if constexpr (kTakesHessianVectorProducts) {
      x.u = rule(x.g, x.hv, x.state);
    } else {
      x.u = rule(x.g, x.state);
    }
  }
};

// ---- The chain, composed of stages ----

/// A place in the chain held by one of `Alternatives`, chosen by the settings: the first
/// whose applies() holds, the last when none before it does (NoStage: the place stays empty).
template <template <typename> class... Alternatives>
struct OneOf {};

/// The rule's place in the chain (its stage is given, not chosen).
struct TheRule {};

/// An empty place.
template <typename V>
struct NoStage {
  static bool applies(const ChainSettings&) { return true; }
  NoStage(const ChainSettings&, at::ScalarType) {}
};

/// The places of a chain, in order.
template <typename... Places>
struct ChainPlaces {};

/// The update chain. A new stage is its type (above), what it needs in ChainSettings, and
/// one line here.
using UpdateChainPlaces = ChainPlaces<OneOf<ClipElements, NoStage>,   // clipping by element
                                      OneOf<ScaleGradient, NoStage>,  // by norm, and global norm
                                      TheRule,                        // the rule
                                      OneOf<AdjustUpdate, NoStage>,   // schedule, weight decay
                                      OneOf<NesterovStep, MomentumStep, PlainStep>>;  // the step

// What a chain reads and writes, from its stages' optional members: the rule's state slots,
// the Hessian-vector product, the velocity.
template <typename Stage>
constexpr size_t stage_state_size() {
  if constexpr (requires { Stage::kStateSize; }) {
    return Stage::kStateSize;
  } else {
    return 0;
  }
}
template <typename Stage>
constexpr bool stage_takes_hv() {
  if constexpr (requires { Stage::kTakesHessianVectorProducts; }) {
    return Stage::kTakesHessianVectorProducts;
  } else {
    return false;
  }
}
template <typename Stage>
constexpr bool stage_uses_velocity() {
  if constexpr (requires { Stage::kUsesVelocity; }) {
    return Stage::kUsesVelocity;
  } else {
    return false;
  }
}

/// The stages, run in order on one element (or tensor, or range).
template <typename V, typename... Stages>
struct Chain {
  static constexpr size_t kSlots = (size_t{0} + ... + stage_state_size<Stages>());
  static constexpr bool kHessian = (false || ... || stage_takes_hv<Stages>());
  static constexpr bool kUsesVelocity = (false || ... || stage_uses_velocity<Stages>());
  using Values = Lane<V, kSlots>;
  using State = std::array<V, kSlots>;

  std::tuple<Stages...> stages;

  [[gnu::always_inline]] void operator()(Values& x) const {
    run(x, std::index_sequence_for<Stages...>{});
  }

 private:
  template <size_t... I>
  [[gnu::always_inline]] void run(Values& x, std::index_sequence<I...>) const {
    (std::get<I>(stages)(x), ...);
  }
};

namespace chain_composition {

template <typename Stage>
inline constexpr bool kIsNoStage = false;
template <typename V>
inline constexpr bool kIsNoStage<NoStage<V>> = true;

template <typename Stage>
constexpr bool always_applies() {
  if constexpr (requires { Stage::kAlways; }) {
    return Stage::kAlways;
  } else {
    return false;
  }
}

// Fills the places in order, each stage chosen at run time, and calls run(chain) with the
// chain of the chosen stages: one instantiation per combination. (A struct, so that each
// overload sees the others.)
template <typename V>
struct Composer {
  // Calls next(stage) with the first of Alternatives<V> that applies (the last otherwise).
  template <template <typename> class First, template <typename> class... Rest, typename Next>
  static void choose(const ChainSettings& settings, at::ScalarType dtype, Next&& next) {
    using Stage = First<V>;
    if constexpr (sizeof...(Rest) == 0 || always_applies<Stage>()) {
      next(Stage(settings, dtype));
    } else {
      if (Stage::applies(settings)) {
        next(Stage(settings, dtype));
      } else {
        choose<Rest...>(settings, dtype, next);
      }
    }
  }

  template <typename RuleStageT, typename Run, typename... Chosen>
  static void compose(ChainPlaces<>, const ChainSettings&, at::ScalarType, const RuleStageT&,
                      Run&& run, const Chosen&... chosen) {
    run(Chain<V, Chosen...>{std::tuple<Chosen...>{chosen...}});
  }

  template <typename... Rest, typename RuleStageT, typename Run, typename... Chosen>
  static void compose(ChainPlaces<TheRule, Rest...>, const ChainSettings& settings,
                      at::ScalarType dtype, const RuleStageT& rule, Run&& run,
                      const Chosen&... chosen) {
    compose(ChainPlaces<Rest...>{}, settings, dtype, rule, run, chosen..., rule);
  }

  template <template <typename> class... Alternatives, typename... Rest, typename RuleStageT,
            typename Run, typename... Chosen>
  static void compose(ChainPlaces<OneOf<Alternatives...>, Rest...>, const ChainSettings& settings,
                      at::ScalarType dtype, const RuleStageT& rule, Run&& run,
                      const Chosen&... chosen) {
    choose<Alternatives...>(settings, dtype, [&](const auto& stage) {
      if constexpr (kIsNoStage<std::decay_t<decltype(stage)>>) {
        compose(ChainPlaces<Rest...>{}, settings, dtype, rule, run, chosen...);
      } else {
        compose(ChainPlaces<Rest...>{}, settings, dtype, rule, run, chosen..., stage);
      }
    });
  }
};

}  // namespace chain_composition

/// Composes the update chain for `settings` around `rule` (a RuleStage<V, ...>) in value
/// type V, its constants of `dtype`, and calls `run(chain)`. Chosen once per parameter and
/// update.
template <typename V, typename RuleStageT, typename Run>
void compose_update_chain(const RuleStageT& rule, const ChainSettings& settings,
                          at::ScalarType dtype, Run&& run) {
  chain_composition::Composer<V>::compose(UpdateChainPlaces{}, settings, dtype, rule, run);
}

// ---- The tensor reference ----

/// Runs `chain` on whole tensors: the steps write the live parameter and velocity in place;
/// what a stage made anew (the rule's state) is copied into the live tensors.
template <typename ChainT>
void run_reference(const ChainT& chain, const ParamTensors& target) {
  typename ChainT::Values x;
  x.g = target.grad;
  x.hv = target.hv;
  x.p = target.param;
  if (target.velocity) x.w = *target.velocity;
  for (size_t k = 0; k < ChainT::kSlots; ++k) x.state[k] = (*target.slots)[k];
  chain(x);
  if (!x.p.is_same(target.param)) target.param.copy_(x.p);
  if constexpr (ChainT::kUsesVelocity) {
    if (!x.w.is_same(*target.velocity)) target.velocity->copy_(x.w);
  }
  for (size_t k = 0; k < ChainT::kSlots; ++k) {
    auto& live = (*target.slots)[k];
    if (!x.state[k].is_same(live)) live.copy_(x.state[k]);
  }
}

}  // namespace downhill::detail
