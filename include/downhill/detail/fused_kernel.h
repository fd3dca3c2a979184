#pragma once
// The update chain (downhill/detail/update_chain.h) as one pass over a parameter's memory on
// the CPU: each element's values read once, run through the chain's stages, written once;
// vectorized, compiled for the baseline and for AVX2, split across threads when large.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <downhill/detail/update_chain.h>
#include <downhill/detail/update_rule.h>

#include <array>
#include <cstddef>
#include <cstdint>

namespace downhill::detail {

#if defined(__x86_64__) && defined(__GNUC__)
#define DOWNHILL_HAS_AVX2_PATH 1
#endif

/// Whether this CPU (and its operating system) runs AVX2 code; checked once.
inline bool cpu_has_avx2() {
#ifdef DOWNHILL_HAS_AVX2_PATH
  static const bool has_avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return has_avx2;
#else
  return false;
#endif
}

/// Whether the fused kernel applies: every tensor contiguous, on the CPU, of the
/// parameter's dtype, which is float or double.
inline bool fused_eligible(const ParamTensors& target) {
  const auto dtype = target.param.scalar_type();
  if (dtype != at::kFloat && dtype != at::kDouble) return false;
  auto fits = [&](const at::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == dtype && t.is_contiguous() &&
           t.numel() == target.param.numel();
  };
  if (!fits(target.param) || !fits(target.grad)) return false;
  if (target.hv.defined() && !fits(target.hv)) return false;
  if (target.velocity && !fits(*target.velocity)) return false;
  for (const auto& slot : *target.slots) {
    if (!fits(slot)) return false;
  }
  return true;
}

/// Elements per task when a fused update is split across threads: large enough
/// that a task outlasts the cost of waking a thread (several microseconds), small
/// enough that two threads share a parameter of a few hundred thousand elements.
inline constexpr int64_t kFusedGrain = 1 << 16;

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
    typename ChainT::Values x;
    for (size_t k = 0; k < ChainT::kSlots; ++k) x.state[k] = slots[k][i];
    x.g = g[i];
    if constexpr (ChainT::kHessian) x.hv = hv[i];
    x.p = p[i];
    if constexpr (ChainT::kUsesVelocity) x.w = w[i];
    local(x);
    p[i] = x.p;
    if constexpr (ChainT::kUsesVelocity) w[i] = x.w;
    for (size_t k = 0; k < ChainT::kSlots; ++k) slots[k][i] = x.state[k];
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

#ifdef DOWNHILL_HAS_AVX2_PATH
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

}  // namespace downhill::detail
