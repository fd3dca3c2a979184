#include "update_stages.h"

#include <cmath>

namespace downhill::detail {

double norm_clip_scale(double norm, double max_norm) {
  if (max_norm <= 0) return 1.0;
  if (!(norm > max_norm)) return 1.0;  // also a zero gradient, which stays zero
  return max_norm / norm;
}

at::Tensor clip_reference(const at::Tensor& grad, double grad_scale, double clip_elem) {
  const auto clamped = clip_elem > 0 ? grad.clamp(-clip_elem, clip_elem) : grad;
  if (grad_scale == 1.0) return clamped;
  // As the fused kernels do: two factors, so that a scale below the dtype's normal
  // range keeps its digits.
  const auto [scale, tail] = split_scale(grad.scalar_type(), grad_scale);
  return tail == 1.0 ? clamped * scale : clamped * scale * tail;
}

at::Tensor adjust_reference(const at::Tensor& update, const at::Tensor& param, double update_scale,
                            double decay) {
  if (update_scale == 1.0 && decay == 0.0) return update;
  return update * update_scale + decay * param;
}

void momentum_reference(at::Tensor& param, at::Tensor& velocity, const at::Tensor& update,
                        double momentum, bool nesterov) {
  if (momentum == 0) {
    param.sub_(update);
    return;
  }
  if (nesterov) {
    velocity.mul_(momentum * momentum).sub_(update, 1.0 + momentum);
  } else {
    velocity.mul_(momentum).sub_(update);
  }
  param.add_(velocity);
}

bool cpu_has_avx2() {
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

bool fused_eligible(const ParamTensors& target) {
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

}  // namespace downhill::detail

namespace downhill::detail {

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
