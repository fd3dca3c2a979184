#pragma once
// What the update engine needs besides the rule chain (downhill/detail/rule_runner.h):
// the one pre-update read of each gradient, the norm-clipping factor, and the tensor
// form of the chain for algorithms written as Optimizer subclasses. Internal.

#include <ATen/ATen.h>
#include <downhill/detail/rule_runner.h>

namespace downhill::detail {

/// min(1, max_norm / norm) for norm clipping; 1 when off or when the gradient is zero.
double norm_clip_scale(double norm, double max_norm);

/// Clipping as tensor operations: clamp when clip_elem > 0, then multiply by grad_scale.
at::Tensor clip_reference(const at::Tensor& grad, double grad_scale, double clip_elem);

/// The schedule and weight decay as tensor operations: u·update_scale + decay·p.
at::Tensor adjust_reference(const at::Tensor& update, const at::Tensor& param, double update_scale,
                            double decay);

/// Momentum and the parameter update as tensor operations: p ← p − u (μ = 0), or
/// w ← μw − u / w ← μ²w − (1+μ)u (Nesterov) and p ← p + w.
void momentum_reference(at::Tensor& param, at::Tensor& velocity, const at::Tensor& update,
                        double momentum, bool nesterov);

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
