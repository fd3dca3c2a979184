#pragma once
// The update chain around a rule — gradient clipping → the rule → schedule and weight
// decay → momentum — as one
// body, run either as the fused single-pass CPU kernel (one element at a time,
// vectorized) or as the tensor-op reference (whole tensors, any device). Installed
// because a user's rule is instantiated here, in the user's code (downhill/rule.h).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <downhill/detail/interval.h>
#include <downhill/lanes.h>
#include <downhill/options.h>
#include <downhill/rule_context.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace downhill::detail {

/// How the chain treats one parameter's gradient in this update.
struct ChainSettings {
  double grad_scale = 1.0;    // the norm-clipping factor, per parameter and global (1: none)
  double clip_elem = 0.0;     // > 0: clamp each element to ±clip_elem first
  double update_scale = 1.0;  // the schedule's factor f(t) on the rule's update
  double decay = 0.0;         // weight decay: the update gains decay·p
  double momentum = 0.0;
  bool nesterov = false;
};

/// One parameter's tensors for an update. Slots and velocity are the live state.
struct ParamTensors {
  size_t index = 0;  // in the optimizer's params()
  at::Tensor param;
  at::Tensor grad;
  at::Tensor hv;                   // undefined unless the rule uses it
  at::Tensor* velocity = nullptr;  // null when momentum is 0
  std::vector<at::Tensor>* slots = nullptr;
};

/// The closed range [lo, hi] the elements of a tensor lie in (the update guard's view).
struct Range {
  double lo = 0.0;
  double hi = 0.0;
};

/// The ranges of one parameter's values, velocity and state slots: before an update, what
/// the guard knows; after UpdateRule::bound, what the update writes.
struct StateRanges {
  Range param;
  Range velocity;
  std::vector<Range> slots;
};

/// What the update engine asks of an algorithm. RuleRunner<Rule> implements it for a
/// rule type; the engine owns one per optimizer.
class UpdateRule {
 public:
  virtual ~UpdateRule() = default;
  /// The display name, e.g. "Adam".
  virtual std::string name() const = 0;
  /// The names of the rule's state tensors per parameter, e.g. {"m", "v"}.
  virtual std::vector<std::string> state_names() const = 0;
  virtual at::Tensor initial_state(size_t slot, const at::Tensor& param,
                                   const Options& options) const = 0;
  virtual bool needs_hessian_vector_products() const = 0;
  /// Whether the update is proportional to the learning rate (all but ADADELTA).
  virtual bool uses_learning_rate() const = 0;
  /// Whether the rule always uses Nesterov momentum (NAG).
  virtual bool forces_nesterov() const = 0;
  /// Called once per update, before any parameter: `update` is 1 for the first.
  virtual void begin_update(const Options& options, int64_t update) = 0;
  /// Runs the chain over one parameter: fused when `fused` and the tensors allow it.
  virtual void update(const ParamTensors& target, const ChainSettings& chain, bool fused) = 0;
  /// The update guard: given the ranges of the (clipped-to-be) gradient and Hessian-vector
  /// product and `ranges` of the parameter's tensors, whether update() provably writes finite
  /// values only; if so, `ranges` becomes the ranges of what it writes. After begin_update.
  /// False (the default) sends the parameter to the guard's checked path.
  virtual bool bound(const ChainSettings& /*chain*/, at::ScalarType /*dtype*/, Range /*grad*/,
                     Range /*hv*/, StateRanges& /*ranges*/) {
    return false;
  }
  /// Whether update() writes the target's tensors only, so that it can run on copies.
  virtual bool updates_only_target() const { return false; }
  /// Throws std::invalid_argument for settings whose arithmetic degenerates for parameters
  /// of `dtype` (an ε the rule divides by that is 0 in that dtype, ...).
  virtual void check_options(const Options& /*options*/, at::ScalarType /*dtype*/) const {}
};

/// Whether this CPU (and its operating system) runs AVX2 code; checked once.
bool cpu_has_avx2();

/// Whether the fused kernel applies: every tensor contiguous, on the CPU, of the
/// parameter's dtype, which is float or double.
bool fused_eligible(const ParamTensors& target);

/// Elements per task when a fused update is split across threads: large enough
/// that a task outlasts the cost of waking a thread (several microseconds), small
/// enough that two threads share a parameter of a few hundred thousand elements.
inline constexpr int64_t kFusedGrain = 1 << 16;

/// `scale` as two factors of T's normal range whose product is `scale` (the second an
/// exact power of two, 1 when `scale` alone is normal), so that multiplying by one then
/// the other rounds once, as multiplying by the exact scale would. One factor alone
/// would fall below T's normal range, losing digits, for gradients near T's largest value.
template <typename T>
std::pair<T, T> split_scale(double scale) {
  constexpr int kTailExponent = std::numeric_limits<T>::min_exponent + 8;  // still normal
  const double tail = std::ldexp(1.0, kTailExponent);
  if (scale == 0 || scale >= tail) return {static_cast<T>(scale), T(1)};
  return {static_cast<T>(scale / tail), static_cast<T>(tail)};
}

/// split_scale for a parameter of `dtype` (float or double), as doubles.
inline std::pair<double, double> split_scale(at::ScalarType dtype, double scale) {
  if (dtype == at::kFloat) {
    const auto [factor, tail] = split_scale<float>(scale);
    return {factor, tail};
  }
  return split_scale<double>(scale);
}

// ---- Stages: each a small type with one body for elements and tensors alike. ----

/// Clipping by norm: g times min(1, c / ‖g‖), as two factors (split_scale).
template <typename V>
struct ScaleGradient {
  V scale, tail;
  V operator()(const V& g) const { return g * scale * tail; }
};

/// The tensor form skips the multiplications when the factor is 1 (no clipping): one
/// temporary less per update, same values.
template <>
struct ScaleGradient<at::Tensor> {
  at::Tensor scale, tail;
  bool identity;
  ScaleGradient(at::Tensor scale_factor, at::Tensor tail_factor)
      : scale(std::move(scale_factor)),
        tail(std::move(tail_factor)),
        identity(scale.item<double>() == 1.0 && tail.item<double>() == 1.0) {}
  at::Tensor operator()(const at::Tensor& g) const { return identity ? g : g * scale * tail; }
};

/// Clipping by element: g limited to [−c, c], then the global-norm factor (exactly g
/// when that is 1).
template <typename V>
struct ClipElements {
  V low, high;
  ScaleGradient<V> scale;
  V operator()(const V& g) const { return scale(lanes::clamp(g, low, high)); }
};

/// No schedule and no weight decay: the rule's update as it is.
template <typename V>
struct KeepUpdate {
  V operator()(const V& u, const V& /*p*/) const { return u; }
};

/// The schedule's factor and decoupled weight decay: u·f(t) + d·p, with d = lr·f(t)·λ
/// and p the parameter before the step.
template <typename V>
struct AdjustUpdate {
  V scale, decay;
  V operator()(const V& u, const V& p) const { return u * scale + decay * p; }
};

/// No momentum: p ← p − u.
template <typename V>
struct PlainStep {
  static constexpr bool kUsesVelocity = false;
  void operator()(V& p, V& /*w*/, const V& u) const { p = p - u; }
};

/// Momentum: w ← μw − u; p ← p + w.
template <typename V>
struct MomentumStep {
  static constexpr bool kUsesVelocity = true;
  V mu;
  void operator()(V& p, V& w, const V& u) const {
    w = mu * w - u;
    p = p + w;
  }
};

/// Nesterov momentum, in the form that needs no look-ahead gradient:
/// w ← μ²w − (1+μ)u; p ← p + w.
template <typename V>
struct NesterovStep {
  static constexpr bool kUsesVelocity = true;
  V mu_squared, one_plus_mu;
  void operator()(V& p, V& w, const V& u) const {
    w = mu_squared * w - one_plus_mu * u;
    p = p + w;
  }
};

// The step stages' tensor forms write the live parameter and velocity in place (the
// element forms' arithmetic, in the same order, so the same roundings), rather than making
// new tensors to copy back.
template <>
struct PlainStep<at::Tensor> {
  static constexpr bool kUsesVelocity = false;
  void operator()(at::Tensor& p, at::Tensor& /*w*/, const at::Tensor& u) const { p.sub_(u); }
};

template <>
struct MomentumStep<at::Tensor> {
  static constexpr bool kUsesVelocity = true;
  at::Tensor mu;
  void operator()(at::Tensor& p, at::Tensor& w, const at::Tensor& u) const {
    w.mul_(mu).sub_(u);
    p.add_(w);
  }
};

template <>
struct NesterovStep<at::Tensor> {
  static constexpr bool kUsesVelocity = true;
  at::Tensor mu_squared, one_plus_mu;
  void operator()(at::Tensor& p, at::Tensor& w, const at::Tensor& u) const {
    // Not sub_(u, alpha): ATen may compute w − alpha·u with one FMA rounding.
    w.mul_(mu_squared).sub_(one_plus_mu * u);
    p.add_(w);
  }
};

/// The number of state tensors a rule keeps per parameter.
template <typename RuleT>
inline constexpr size_t kStateSize = std::tuple_size_v<std::decay_t<decltype(RuleT::state)>>;

/// Whether a rule's body takes the Hessian-vector product: u = rule(g, hv, state).
template <typename RuleT, typename V>
inline constexpr bool kTakesHessianVectorProducts =
    std::is_invocable_v<const RuleT&, const V&, const V&, std::array<V, kStateSize<RuleT>>&>;

/// The whole update of one element (or one tensor): the gradient stage, the rule, the
/// update stage (schedule, weight decay), then the step stage. A new stage goes into one
/// of these slots, or a new slot here and in with_chain.
template <typename V, typename RuleT, typename GradientStage, typename UpdateStage,
          typename StepStage>
struct Chain {
  static constexpr size_t kSlots = kStateSize<RuleT>;
  static constexpr bool kHessian = kTakesHessianVectorProducts<RuleT, V>;
  static constexpr bool kUsesVelocity = StepStage::kUsesVelocity;
  using State = std::array<V, kSlots>;

  RuleT rule;
  GradientStage gradient;
  UpdateStage adjust;
  StepStage step;

  void operator()(const V& g, const V& hv, V& p, V& w, State& state) const {
    const V clipped = gradient(g);
    V u;
    if constexpr (kHessian) {
      u = rule(clipped, hv, state);
    } else {
      u = rule(clipped, state);
    }
    step(p, w, adjust(u, p));
  }
};

/// Builds the chain's stages for `settings` in value type V and calls `run(chain)`:
/// one instantiation per combination of stages, chosen once per parameter and update.
template <typename V, typename RuleT, typename Run>
void with_chain(const RuleT& rule, const ChainSettings& settings, const RuleContext& context,
                at::ScalarType dtype, Run&& run) {
  auto constant = [&](double value) { return context.constant<V>(value); };
  auto with_step = [&](const auto& gradient, const auto& adjust) {
    using Gradient = std::decay_t<decltype(gradient)>;
    using Adjust = std::decay_t<decltype(adjust)>;
    const double mu = settings.momentum;
    if (mu == 0) {
      run(Chain<V, RuleT, Gradient, Adjust, PlainStep<V>>{rule, gradient, adjust, {}});
    } else if (settings.nesterov) {
      run(Chain<V, RuleT, Gradient, Adjust, NesterovStep<V>>{
          rule, gradient, adjust, {constant(mu * mu), constant(1.0 + mu)}});
    } else {
      run(Chain<V, RuleT, Gradient, Adjust, MomentumStep<V>>{
          rule, gradient, adjust, {constant(mu)}});
    }
  };
  auto with_adjust = [&](const auto& gradient) {
    if (settings.update_scale == 1.0 && settings.decay == 0.0) {
      with_step(gradient, KeepUpdate<V>{});
    } else {
      with_step(gradient,
                AdjustUpdate<V>{constant(settings.update_scale), constant(settings.decay)});
    }
  };
  const auto [scale, tail] = split_scale(dtype, settings.grad_scale);
  const ScaleGradient<V> scale_gradient{constant(scale), constant(tail)};
  if (settings.clip_elem > 0) {
    with_adjust(ClipElements<V>{constant(-settings.clip_elem), constant(settings.clip_elem),
                                scale_gradient});
  } else {
    with_adjust(scale_gradient);
  }
}

// ---- The fused kernel ----

/// The raw pointers of one parameter's fused update, shared by every task.
template <typename T, size_t kSlots>
struct FusedPointers {
  T* param = nullptr;
  const T* grad = nullptr;
  const T* hv = nullptr;
  T* velocity = nullptr;
  std::array<T*, kSlots> slots{};
};

/// The chain over elements [begin, end): one read and one write of each array.
/// Inlined into one copy per instruction set below, where the compiler vectorizes it.
template <typename T, typename ChainT>
[[gnu::always_inline]] inline void fused_range(const ChainT& chain,
                                               const FusedPointers<T, ChainT::kSlots>& pointers,
                                               int64_t begin, int64_t end) {
  // Local copies: the compiler then sees that no store in the loop changes the
  // chain's constants or the pointers, so it keeps them in registers, and it can
  // turn the body's conditionals into selects.
  const ChainT local = chain;
  T* __restrict p = pointers.param;
  const T* __restrict g = pointers.grad;
  const T* __restrict hv = pointers.hv;
  T* __restrict w = pointers.velocity;
  const std::array<T*, ChainT::kSlots> slots = pointers.slots;
#pragma GCC ivdep
  for (int64_t i = begin; i < end; ++i) {
    typename ChainT::State state;
    for (size_t k = 0; k < ChainT::kSlots; ++k) state[k] = slots[k][i];
    T pi = p[i];
    T wi = T(0);
    if constexpr (ChainT::kUsesVelocity) wi = w[i];
    T hvi = T(0);
    if constexpr (ChainT::kHessian) hvi = hv[i];
    local(g[i], hvi, pi, wi, state);
    p[i] = pi;
    if constexpr (ChainT::kUsesVelocity) w[i] = wi;
    for (size_t k = 0; k < ChainT::kSlots; ++k) slots[k][i] = state[k];
  }
}

// One out-of-line copy of the loop per instruction set. The AVX2 copy handles 8
// floats per instruction (SSE2, the x86-64 baseline, 4), which matters for the
// rules with a division and a square root; it runs only where cpu_has_avx2().
// No FMA: a fused multiply-add would round differently from the tensor reference.
template <typename T, typename ChainT>
[[gnu::noinline]] void fused_range_baseline(const ChainT& chain,
                                            const FusedPointers<T, ChainT::kSlots>& pointers,
                                            int64_t begin, int64_t end) {
  fused_range<T>(chain, pointers, begin, end);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define DOWNHILL_HAS_AVX2_PATH 1
template <typename T, typename ChainT>
[[gnu::noinline, gnu::target("avx2")]] void fused_range_avx2(
    const ChainT& chain, const FusedPointers<T, ChainT::kSlots>& pointers, int64_t begin,
    int64_t end) {
  fused_range<T>(chain, pointers, begin, end);
}
#endif

/// Runs `chain` over every element of `target`, split across threads when large.
template <typename T, typename ChainT>
void run_fused(const ChainT& chain, const ParamTensors& target) {
  FusedPointers<T, ChainT::kSlots> pointers;
  pointers.param = target.param.data_ptr<T>();
  pointers.grad = target.grad.data_ptr<T>();
  if constexpr (ChainT::kHessian) pointers.hv = target.hv.data_ptr<T>();
  if constexpr (ChainT::kUsesVelocity) pointers.velocity = target.velocity->data_ptr<T>();
  for (size_t k = 0; k < ChainT::kSlots; ++k) pointers.slots[k] = (*target.slots)[k].data_ptr<T>();

  auto range = &fused_range_baseline<T, ChainT>;
#ifdef DOWNHILL_HAS_AVX2_PATH
  if (cpu_has_avx2()) range = &fused_range_avx2<T, ChainT>;
#endif
  const int64_t n = target.param.numel();
  if (n <= kFusedGrain) {
    range(chain, pointers, 0, n);  // small: no thread pool round trip
    return;
  }
  at::parallel_for(0, n, kFusedGrain,
                   [&](int64_t begin, int64_t end) { range(chain, pointers, begin, end); });
}

// ---- The tensor reference ----

/// Runs `chain` on whole tensors, then writes the results into the live tensors.
template <typename ChainT>
void run_reference(const ChainT& chain, const ParamTensors& target) {
  at::Tensor p = target.param;
  at::Tensor w = target.velocity ? *target.velocity : at::Tensor();
  typename ChainT::State state;
  for (size_t k = 0; k < ChainT::kSlots; ++k) state[k] = (*target.slots)[k];
  chain(target.grad, target.hv, p, w, state);
  // The step stages write in place; a stage that made new tensors is copied back.
  if (!p.is_same(target.param)) target.param.copy_(p);
  if constexpr (ChainT::kUsesVelocity) {
    if (!w.is_same(*target.velocity)) target.velocity->copy_(w);
  }
  for (size_t k = 0; k < ChainT::kSlots; ++k) {
    auto& live = (*target.slots)[k];
    if (!state[k].is_same(live)) live.copy_(state[k]);
  }
}

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

  bool forces_nesterov() const override {
    if constexpr (requires { Rule<float>::kNesterov; }) {
      return Rule<float>::kNesterov;
    } else {
      return false;
    }
  }

  void begin_update(const Options& options, int64_t update) override {
    options_ = &options;
    update_ = update;
    float_rule_.emplace(make<float>(RuleContext(options, update, at::kFloat)));
    double_rule_.emplace(make<double>(RuleContext(options, update, at::kDouble)));
  }

  bool updates_only_target() const override { return true; }

  void check_options(const Options& options, at::ScalarType dtype) const override {
    if constexpr (requires { Rule<float>::check_options(options, dtype); }) {
      Rule<float>::check_options(options, dtype);
    }
  }

  bool bound(const ChainSettings& chain, at::ScalarType dtype, Range grad, Range hv,
             StateRanges& ranges) override {
    if constexpr (kBounded) {
      const RuleContext context(*options_, update_, dtype);
      if (dtype == at::kFloat) return bound_as<float>(chain, context, dtype, grad, hv, ranges);
      return bound_as<double>(chain, context, dtype, grad, hv, ranges);
    } else {
      return false;
    }
  }

  void update(const ParamTensors& target, const ChainSettings& chain, bool fused) override {
    const auto dtype = target.param.scalar_type();
    const RuleContext context(*options_, update_, dtype);
    if (fused && fused_eligible(target)) {
      if (dtype == at::kFloat) {
        with_chain<float>(*float_rule_, chain, context, dtype,
                          [&](const auto& c) { run_fused<float>(c, target); });
      } else {
        with_chain<double>(*double_rule_, chain, context, dtype,
                           [&](const auto& c) { run_fused<double>(c, target); });
      }
      return;
    }
    with_chain<at::Tensor>(make<at::Tensor>(context), chain, context, dtype,
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

  template <typename T>
  bool bound_as(const ChainSettings& settings, const RuleContext& context, at::ScalarType dtype,
                Range grad, Range hv, StateRanges& ranges) const {
    bool proven = false;
    with_chain<Interval<T>>(
        make<Interval<T>>(context), settings, context, dtype,
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

  template <typename ChainT>
  static bool bound_chain(const ChainT& chain, Range grad, Range hv, StateRanges& ranges) {
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
        I p = I::exact(ranges.param.lo, ranges.param.hi);
        I w;
        if constexpr (ChainT::kUsesVelocity) w = I::exact(ranges.velocity.lo, ranges.velocity.hi);
        typename ChainT::State state;
        for (size_t k = 0; k < ChainT::kSlots; ++k) {
          state[k] = I::exact(ranges.slots[k].lo, ranges.slots[k].hi);
        }
        chain(I::exact(grads[a].lo, grads[a].hi), I::exact(hvs[b].lo, hvs[b].hi), p, w, state);
        p_out = first ? p : hull(p_out, p);
        if constexpr (ChainT::kUsesVelocity) w_out = first ? w : hull(w_out, w);
        for (size_t k = 0; k < ChainT::kSlots; ++k) {
          slots_out[k] = first ? state[k] : hull(slots_out[k], state[k]);
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
  const Options* options_ = nullptr;
  int64_t update_ = 0;
  std::optional<Rule<float>> float_rule_;
  std::optional<Rule<double>> double_rule_;
};

}  // namespace downhill::detail
