#pragma once
// The arithmetic a rule's update body may use besides + − × ÷ and comparisons,
// written once for the two kinds of value the body runs on: one element (float or
// double, in the fused CPU kernel) and a whole tensor (the tensor-op reference). The update
// guard runs the same body on ranges of values (downhill/detail/interval.h).

#include <ATen/ATen.h>
#include <downhill/detail/interval.h>

#include <cmath>
#include <concepts>

namespace downhill::lanes {

/// One element of the fused kernel.
template <typename T>
concept Element = std::floating_point<T>;

/// `condition ? if_true : if_false`, element-wise for tensors.
template <Element T>
T select(bool condition, T if_true, T if_false) {
  return condition ? if_true : if_false;
}
inline at::Tensor select(const at::Tensor& condition, const at::Tensor& if_true,
                         const at::Tensor& if_false) {
  return at::where(condition, if_true, if_false);
}

template <Element T>
T sqrt(T x) {
  return std::sqrt(x);
}
inline at::Tensor sqrt(const at::Tensor& x) { return x.sqrt(); }

template <Element T>
T abs(T x) {
  return std::abs(x);
}
inline at::Tensor abs(const at::Tensor& x) { return x.abs(); }

/// The larger of a and b; NaN when either is NaN.
template <Element T>
T max(T a, T b) {
  return b != b ? b : (a < b ? b : a);
}
inline at::Tensor max(const at::Tensor& a, const at::Tensor& b) { return at::maximum(a, b); }

/// The smaller of a and b; NaN when either is NaN.
template <Element T>
T min(T a, T b) {
  return b != b ? b : (b < a ? b : a);
}
inline at::Tensor min(const at::Tensor& a, const at::Tensor& b) { return at::minimum(a, b); }

/// x limited to [low, high].
template <Element T>
T clamp(T x, T low, T high) {
  return std::min(std::max(x, low), high);
}
inline at::Tensor clamp(const at::Tensor& x, const at::Tensor& low, const at::Tensor& high) {
  return at::minimum(at::maximum(x, low), high);
}

/// −1, 0 or 1 (0 for ±0, NaN for NaN, as for tensors); (0 < x) − (x < 0) vectorizes.
template <Element T>
T sign(T x) {
  return x != x ? x : static_cast<T>(x > 0) - static_cast<T>(x < 0);
}
inline at::Tensor sign(const at::Tensor& x) { return x.sign(); }

}  // namespace downhill::lanes
