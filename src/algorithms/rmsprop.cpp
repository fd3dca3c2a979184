// RMSProp, Graves' centred form: f ← γf + (1−γ)g; G ← γG + (1−γ)g²;
// u = lr·g / sqrt(G − f² + ε).
#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

class RmsProp final : public BuiltinOptimizer {
 public:
  RmsProp(Loss loss, Params params, Options options)
      : BuiltinOptimizer("RMSProp", std::move(loss), std::move(params), std::move(options)) {}

 protected:
  std::vector<std::string> state_names() const override { return {"f", "G"}; }

  at::Tensor compute_update(size_t, const at::Tensor& grad, const at::Tensor&,
                            std::vector<at::Tensor>& state) override {
    auto& mean = state[0];
    auto& mean_square = state[1];
    const double gamma = ewma_weight(options().rms_halflife());
    mean.mul_(gamma).add_(grad, 1 - gamma);
    mean_square.mul_(gamma).addcmul_(grad, grad, 1 - gamma);
    // G − f² ≥ 0 in exact arithmetic; the clamp keeps rounding from making it a NaN.
    const auto variance = (mean_square - mean.square()).clamp_min(0);
    return grad * options().learning_rate() / (variance + options().rms_regularizer()).sqrt();
  }

  bool fused_update(size_t index, const at::Tensor& grad, const at::Tensor& hv, double grad_scale,
                    double clip_elem) override {
    const double lr = options().learning_rate(), eps = options().rms_regularizer();
    const double gamma = ewma_weight(options().rms_halflife());
    return run_kernel(index, grad, hv, grad_scale, clip_elem, [=](auto scalar) {
      using T = typename decltype(scalar)::type;
      return [lr = static_cast<T>(lr), eps = static_cast<T>(eps), gamma = static_cast<T>(gamma),
              rest = static_cast<T>(1 - gamma)](T g, int64_t i, const KernelData<T>& data) {
        T& mean = data.slot0[i];
        T& mean_square = data.slot1[i];
        mean = mean * gamma + rest * g;
        mean_square = mean_square * gamma + rest * g * g;
        const T variance = std::max(mean_square - mean * mean, T(0));
        return g * lr / std::sqrt(variance + eps);
      };
    });
  }
};

}  // namespace

std::unique_ptr<Optimizer> make_rmsprop(Loss loss, Params params, Options options) {
  return std::make_unique<RmsProp>(std::move(loss), std::move(params), std::move(options));
}

}  // namespace downhill::detail
