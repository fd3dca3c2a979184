// Adam: m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
// u = lr·(m / (1−β₁ᵗ)) / (sqrt(v / (1−β₂ᵗ)) + ε), with β from half-lives.
#include <cmath>

#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

class Adam final : public BuiltinOptimizer {
 public:
  Adam(Loss loss, Params params, Options options)
      : BuiltinOptimizer("Adam", std::move(loss), std::move(params), std::move(options)) {}

 protected:
  std::vector<std::string> state_names() const override { return {"m", "v"}; }

  void begin_update() override {
    const double t = static_cast<double>(update_count() + 1);
    beta1_ = ewma_weight(options().beta1_halflife());
    beta2_ = ewma_weight(options().beta2_halflife());
    correction1_ = 1 - std::pow(beta1_, t);
    correction2_ = 1 - std::pow(beta2_, t);
  }

  at::Tensor compute_update(size_t, const at::Tensor& grad, const at::Tensor&,
                            std::vector<at::Tensor>& state) override {
    auto& mean = state[0];
    auto& mean_square = state[1];
    mean.mul_(beta1_).add_(grad, 1 - beta1_);
    mean_square.mul_(beta2_).addcmul_(grad, grad, 1 - beta2_);
    return mean / correction1_ * options().learning_rate() /
           ((mean_square / correction2_).sqrt() + options().rms_regularizer());
  }

  bool fused_update(size_t index, const at::Tensor& grad, const at::Tensor& hv, double grad_scale,
                    double clip_elem) override {
    const double lr = options().learning_rate(), eps = options().rms_regularizer();
    const double b1 = beta1_, b2 = beta2_, c1 = correction1_, c2 = correction2_;
    return run_kernel(index, grad, hv, grad_scale, clip_elem, [=](auto scalar) {
      using T = typename decltype(scalar)::type;
      return [lr = static_cast<T>(lr), eps = static_cast<T>(eps), b1 = static_cast<T>(b1),
              rest1 = static_cast<T>(1 - b1), b2 = static_cast<T>(b2),
              rest2 = static_cast<T>(1 - b2), c1 = static_cast<T>(c1),
              c2 = static_cast<T>(c2)](T g, int64_t i, const KernelData<T>& data) {
        T& mean = data.slot0[i];
        T& mean_square = data.slot1[i];
        mean = mean * b1 + rest1 * g;
        mean_square = mean_square * b2 + rest2 * g * g;
        return mean / c1 * lr / (std::sqrt(mean_square / c2) + eps);
      };
    });
  }

 private:
  double beta1_ = 0, beta2_ = 0, correction1_ = 1, correction2_ = 1;
};

}  // namespace

std::unique_ptr<Optimizer> make_adam(Loss loss, Params params, Options options) {
  return std::make_unique<Adam>(std::move(loss), std::move(params), std::move(options));
}

}  // namespace downhill::detail
