#pragma once
// The stages every algorithm shares, written once: gradient clipping and
// momentum, in a tensor-op reference form and as the driver of the fused
// single-pass CPU kernels. Internal to the library.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <utility>
#include <vector>

namespace downhill::detail {

/// γ(h) = exp(−ln 2 / h): the EWMA weight of a half-life h (docs/guide.md's mathematics).
inline double ewma_weight(double halflife) { return std::exp(-std::log(2.0) / halflife); }

/// min(1, max_norm / norm) for norm clipping; 1 when off or when the gradient is zero.
double norm_clip_scale(double norm, double max_norm);

/// Reference clipping: clamp when clip_elem > 0, else multiply by grad_scale (if not 1).
at::Tensor clip_reference(const at::Tensor& grad, double grad_scale, double clip_elem);

/// Reference momentum and parameter update: p ← p − u (μ = 0), or
/// w ← μw − u / w ← μ²w − (1+μ)u (Nesterov) and p ← p + w.
void momentum_reference(at::Tensor& param, at::Tensor& velocity, const at::Tensor& update,
                        double momentum, bool nesterov);

enum class MomentumKind { kNone, kRegular, kNesterov };

/// Raw pointers a fused kernel reads and writes for one parameter. Slots the
/// algorithm does not use are null. `hv` is ESGD's Hessian-vector product.
template <typename T>
struct KernelData {
  T* slot0 = nullptr;
  T* slot1 = nullptr;
  T* slot2 = nullptr;
  const T* hv = nullptr;
};

/// Tag carrying a scalar type to a kernel factory.
template <typename T>
struct Scalar {
  using type = T;
};

/// Elements per task when a fused update is split across threads: large enough
/// that a task outlasts the cost of waking a thread (several microseconds), small
/// enough that two threads share a parameter of a few hundred thousand elements.
inline constexpr int64_t kFusedGrain = 1 << 16;

/// Whether this CPU (and its operating system) runs AVX2 code; checked once.
bool cpu_has_avx2();

/// Everything the fused driver needs about one parameter's update.
struct FusedTarget {
  at::Tensor param;
  at::Tensor grad;
  at::Tensor hv;                   // undefined unless the algorithm uses it
  at::Tensor* velocity = nullptr;  // null when momentum is 0
  std::vector<at::Tensor>* slots = nullptr;
  double grad_scale = 1.0;
  double clip_elem = 0.0;
  double momentum = 0.0;
  bool nesterov = false;
};

/// Whether the fused path applies: every tensor contiguous, on the CPU, and of the
/// parameter's dtype, which is float or double.
bool fused_eligible(const FusedTarget& target);

/// The raw pointers and constants of one fused update, shared by every task.
template <typename T>
struct FusedLoop {
  T* param = nullptr;
  const T* grad = nullptr;
  T* velocity = nullptr;
  KernelData<T> data;
  // The norm-clipping scale as two factors, scale · scale_tail: one alone would fall
  // below T's normal range (and lose its digits) for gradients near T's largest value.
  T scale, scale_tail, clip, mu, mu_squared, one_plus_mu;
};

/// `scale` as two factors of T's normal range whose product is `scale` (the second an
/// exact power of two, 1 when `scale` alone is normal), so that multiplying by one then
/// the other rounds once, as multiplying by the exact scale would.
template <typename T>
std::pair<T, T> split_scale(double scale) {
  constexpr int kTailExponent = std::numeric_limits<T>::min_exponent + 8;  // still normal
  const double tail = std::ldexp(1.0, kTailExponent);
  if (scale == 0 || scale >= tail) return {static_cast<T>(scale), T(1)};
  return {static_cast<T>(scale / tail), static_cast<T>(tail)};
}

/// The fused update of elements [begin, end): clipping, the algorithm's kernel and
/// momentum, one read and one write of each array. Inlined into one copy per
/// instruction set below, where the compiler vectorizes it.
template <typename T, bool kClipElem, MomentumKind kMomentum, typename Kernel>
[[gnu::always_inline]] inline void fused_range(const Kernel& kernel, const FusedLoop<T>& loop,
                                               int64_t begin, int64_t end) {
  T* __restrict p = loop.param;
  const T* __restrict g = loop.grad;
  T* __restrict w = loop.velocity;
  // Local copies: the compiler then sees that no store in the loop changes the
  // kernel's constants or the pointers, so it keeps them in registers, and it can
  // turn the kernel's conditionals into selects (loads through `kernel` it could not).
  const Kernel local_kernel = kernel;
  const KernelData<T> data = loop.data;
  const T scale = loop.scale, scale_tail = loop.scale_tail, clip = loop.clip, mu = loop.mu;
  const T mu_squared = loop.mu_squared, one_plus_mu = loop.one_plus_mu;
#pragma GCC ivdep
  for (int64_t i = begin; i < end; ++i) {
    T gi = g[i];
    if constexpr (kClipElem) {
      gi = std::min(std::max(gi, -clip), clip);
    } else {
      gi *= scale;
      gi *= scale_tail;
    }
    const T u = local_kernel(gi, i, data);
    if constexpr (kMomentum == MomentumKind::kNone) {
      p[i] -= u;
    } else if constexpr (kMomentum == MomentumKind::kRegular) {
      const T wi = mu * w[i] - u;
      w[i] = wi;
      p[i] += wi;
    } else {
      const T wi = mu_squared * w[i] - one_plus_mu * u;
      w[i] = wi;
      p[i] += wi;
    }
  }
}

// One out-of-line copy of the loop per instruction set. The AVX2 copy handles 8
// floats per instruction (SSE2, the x86-64 baseline, 4), which matters for the
// kernels with a division and a square root; it runs only where cpu_has_avx2().
// No FMA: a fused multiply-add would round differently from the reference rule.
template <typename T, bool kClipElem, MomentumKind kMomentum, typename Kernel>
[[gnu::noinline]] void fused_range_baseline(const Kernel& kernel, const FusedLoop<T>& loop,
                                            int64_t begin, int64_t end) {
  fused_range<T, kClipElem, kMomentum>(kernel, loop, begin, end);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define DOWNHILL_HAS_AVX2_PATH 1
template <typename T, bool kClipElem, MomentumKind kMomentum, typename Kernel>
[[gnu::noinline, gnu::target("avx2")]] void fused_range_avx2(const Kernel& kernel,
                                                             const FusedLoop<T>& loop,
                                                             int64_t begin, int64_t end) {
  fused_range<T, kClipElem, kMomentum>(kernel, loop, begin, end);
}
#endif

template <typename T, bool kClipElem, MomentumKind kMomentum, typename Kernel>
void run_fused_loop(const Kernel& kernel, const FusedTarget& target) {
  FusedLoop<T> loop;
  loop.param = target.param.data_ptr<T>();
  loop.grad = target.grad.data_ptr<T>();
  loop.velocity = target.velocity ? target.velocity->data_ptr<T>() : nullptr;
  const std::vector<at::Tensor>& slots = *target.slots;
  if (slots.size() > 0) loop.data.slot0 = slots[0].data_ptr<T>();
  if (slots.size() > 1) loop.data.slot1 = slots[1].data_ptr<T>();
  if (slots.size() > 2) loop.data.slot2 = slots[2].data_ptr<T>();
  if (target.hv.defined()) loop.data.hv = target.hv.data_ptr<T>();
  std::tie(loop.scale, loop.scale_tail) = split_scale<T>(target.grad_scale);
  loop.clip = static_cast<T>(target.clip_elem);
  loop.mu = static_cast<T>(target.momentum);
  loop.mu_squared = static_cast<T>(target.momentum * target.momentum);
  loop.one_plus_mu = static_cast<T>(1.0 + target.momentum);

  auto range = &fused_range_baseline<T, kClipElem, kMomentum, Kernel>;
#ifdef DOWNHILL_HAS_AVX2_PATH
  if (cpu_has_avx2()) range = &fused_range_avx2<T, kClipElem, kMomentum, Kernel>;
#endif
  const int64_t n = target.param.numel();
  if (n <= kFusedGrain) {
    range(kernel, loop, 0, n);  // small: no thread pool round trip
    return;
  }
  at::parallel_for(0, n, kFusedGrain,
                   [&](int64_t begin, int64_t end) { range(kernel, loop, begin, end); });
}

template <typename T, typename Kernel>
void dispatch_fused(const Kernel& kernel, const FusedTarget& target) {
  const bool clip_elem = target.clip_elem > 0;
  const MomentumKind momentum = target.momentum == 0 ? MomentumKind::kNone
                                : target.nesterov    ? MomentumKind::kNesterov
                                                     : MomentumKind::kRegular;
  switch (momentum) {
    case MomentumKind::kNone:
      return clip_elem ? run_fused_loop<T, true, MomentumKind::kNone>(kernel, target)
                       : run_fused_loop<T, false, MomentumKind::kNone>(kernel, target);
    case MomentumKind::kRegular:
      return clip_elem ? run_fused_loop<T, true, MomentumKind::kRegular>(kernel, target)
                       : run_fused_loop<T, false, MomentumKind::kRegular>(kernel, target);
    case MomentumKind::kNesterov:
      return clip_elem ? run_fused_loop<T, true, MomentumKind::kNesterov>(kernel, target)
                       : run_fused_loop<T, false, MomentumKind::kNesterov>(kernel, target);
  }
}

/// Runs the fused update when eligible; `make_kernel(Scalar<T>{})` returns the
/// algorithm's elementwise kernel for scalar type T: a callable
/// `T(T clipped_grad, int64_t i, const KernelData<T>&)` returning the update u
/// and updating the algorithm's state at element i. Returns false when not eligible.
template <typename MakeKernel>
bool run_fused(const FusedTarget& target, MakeKernel&& make_kernel) {
  if (!fused_eligible(target)) return false;
  if (target.param.scalar_type() == at::kFloat) {
    dispatch_fused<float>(make_kernel(Scalar<float>{}), target);
  } else {
    dispatch_fused<double>(make_kernel(Scalar<double>{}), target);
  }
  return true;
}

}  // namespace downhill::detail

namespace downhill::detail {

/// Σ g², accumulated in double, in one read of `grad`: finite exactly when every
/// element is finite (for any gradient below 1e150 in magnitude), and the square
/// of the L2 norm. Used both as the non-finite check and for norm clipping.
double sum_of_squares(const at::Tensor& grad);

}  // namespace downhill::detail
