#include "update_stages.h"

#include <ATen/Parallel.h>
#include <downhill/detail/fused_kernel.h>

#include <cmath>

namespace downhill::detail {

double norm_clip_scale(double norm, double max_norm) {
  if (max_norm <= 0) return 1.0;
  if (!(norm > max_norm)) return 1.0;  // also a zero gradient, which stays zero
  return max_norm / norm;
}

namespace {

// Σ x² over [begin, end) in double. Sixteen independent accumulators hide the
// latency of the additions (four would cap the loop near 19 GB/s, below what
// memory delivers) and let the compiler vectorize without -ffast-math.
template <typename T>
[[gnu::always_inline]] inline double sum_of_squares_range(const T* __restrict data, int64_t begin,
                                                          int64_t end) {
  constexpr int kLanes = 16;
  double acc[kLanes] = {};
  int64_t i = begin;
  for (; i + kLanes <= end; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const double x = static_cast<double>(data[i + k]);
      acc[k] += x * x;
    }
  }
  for (; i < end; ++i) {
    const double x = static_cast<double>(data[i]);
    acc[0] += x * x;
  }
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int k = 0; k < width; ++k) acc[k] += acc[k + width];
  }
  return acc[0];
}

template <typename T>
[[gnu::noinline]] double sum_of_squares_baseline(const T* data, int64_t begin, int64_t end) {
  return sum_of_squares_range(data, begin, end);
}

#ifdef DOWNHILL_HAS_AVX2_PATH
template <typename T>
[[gnu::noinline, gnu::target("avx2")]] double sum_of_squares_avx2(const T* data, int64_t begin,
                                                                  int64_t end) {
  return sum_of_squares_range(data, begin, end);
}
#endif

template <typename T>
double sum_of_squares_contiguous(const T* data, int64_t n) {
  auto range = &sum_of_squares_baseline<T>;
#ifdef DOWNHILL_HAS_AVX2_PATH
  if (cpu_has_avx2()) range = &sum_of_squares_avx2<T>;
#endif
  if (n <= kFusedGrain) return range(data, 0, n);
  return at::parallel_reduce(
      0, n, kFusedGrain, 0.0,
      [&](int64_t begin, int64_t end, double partial) { return partial + range(data, begin, end); },
      [](double a, double b) { return a + b; });
}

}  // namespace

double sum_of_squares(const at::Tensor& grad) {
  if (grad.device().is_cpu() && grad.is_contiguous()) {
    if (grad.scalar_type() == at::kFloat) {
      return sum_of_squares_contiguous(grad.data_ptr<float>(), grad.numel());
    }
    if (grad.scalar_type() == at::kDouble) {
      return sum_of_squares_contiguous(grad.data_ptr<double>(), grad.numel());
    }
  }
  return grad.to(at::kDouble).square().sum().item<double>();
}

bool has_nonfinite(const at::Tensor& t, double sum_of_squares) {
  if (std::isfinite(sum_of_squares)) return false;
  if (std::isnan(sum_of_squares)) return true;
  at::NoGradGuard no_grad;
  return !at::isfinite(t).all().item<bool>();
}

double overflow_safe_norm(const at::Tensor& t) {
  at::NoGradGuard no_grad;
  const double largest = t.abs().max().item<double>();
  return largest * std::sqrt(sum_of_squares((t / largest).contiguous()));
}

}  // namespace downhill::detail
