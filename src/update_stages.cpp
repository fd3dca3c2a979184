#include "update_stages.h"

namespace downhill::detail {

double norm_clip_scale(double norm, double max_norm) {
  if (max_norm <= 0) return 1.0;
  if (!(norm > max_norm)) return 1.0;  // also a zero gradient, which stays zero
  return max_norm / norm;
}

at::Tensor clip_reference(const at::Tensor& grad, double grad_scale, double clip_elem) {
  if (clip_elem > 0) return grad.clamp(-clip_elem, clip_elem);
  if (grad_scale != 1.0) return grad * grad_scale;
  return grad;
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

bool fused_eligible(const FusedTarget& target) {
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

template <typename T>
double sum_of_squares_contiguous(const T* data, int64_t n) {
  return at::parallel_reduce(
      0, n, kFusedGrain, 0.0,
      [&](int64_t begin, int64_t end, double partial) {
        // Four accumulators let the compiler vectorize the reduction without -ffast-math.
        double acc[4] = {0, 0, 0, 0};
        int64_t i = begin;
        for (; i + 4 <= end; i += 4) {
          for (int k = 0; k < 4; ++k) {
            const double x = static_cast<double>(data[i + k]);
            acc[k] += x * x;
          }
        }
        for (; i < end; ++i) {
          const double x = static_cast<double>(data[i]);
          acc[0] += x * x;
        }
        return partial + ((acc[0] + acc[1]) + (acc[2] + acc[3]));
      },
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

}  // namespace downhill::detail
