#pragma once
// What the update engine needs besides the update chain (downhill/detail/update_chain.h):
// the one pre-update read of each gradient and the norm-clipping factor. Internal.

#include <ATen/ATen.h>

namespace downhill::detail {

/// min(1, max_norm / norm) for norm clipping; 1 when off or when the gradient is zero.
double norm_clip_scale(double norm, double max_norm);

/// Σ g², accumulated in double, in one read of `grad`: finite exactly when every
/// element is finite (for any gradient below 1e150 in magnitude), and the square
/// of the L2 norm. Used both as the non-finite check and for norm clipping.
double sum_of_squares(const at::Tensor& grad);

/// Whether `t` holds a NaN or an infinity, given its sum of squares: that sum is
/// also infinite when the squares of huge but finite elements overflow.
bool has_nonfinite(const at::Tensor& t, double sum_of_squares);

/// The L2 norm of a finite `t` whose sum of squares overflowed: scaled by its largest element.
double overflow_safe_norm(const at::Tensor& t);

}  // namespace downhill::detail
