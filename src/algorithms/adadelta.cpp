// ADADELTA: G ← γG + (1−γ)g²; u = g·sqrt(X + ε) / sqrt(G + ε) (old X);
// X ← γX + (1−γ)u². No learning rate.
#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

class Adadelta final : public BuiltinOptimizer {
 public:
  Adadelta(Loss loss, Params params, Options options)
      : BuiltinOptimizer("ADADELTA", std::move(loss), std::move(params), std::move(options)) {}

 protected:
  std::vector<std::string> state_names() const override { return {"G", "X"}; }

  at::Tensor compute_update(size_t, const at::Tensor& grad, const at::Tensor&,
                            std::vector<at::Tensor>& state) override {
    auto& grad_square = state[0];
    auto& step_square = state[1];
    const double gamma = ewma_weight(options().rms_halflife());
    const double eps = options().rms_regularizer();
    grad_square.mul_(gamma).addcmul_(grad, grad, 1 - gamma);
    auto update = grad * (step_square + eps).sqrt() / (grad_square + eps).sqrt();
    step_square.mul_(gamma).addcmul_(update, update, 1 - gamma);
    return update;
  }

  bool fused_update(size_t index, const at::Tensor& grad, const at::Tensor& hv, double grad_scale,
                    double clip_elem) override {
    const double eps = options().rms_regularizer();
    const double gamma = ewma_weight(options().rms_halflife());
    return run_kernel(index, grad, hv, grad_scale, clip_elem, [=](auto scalar) {
      using T = typename decltype(scalar)::type;
      return [eps = static_cast<T>(eps), gamma = static_cast<T>(gamma),
              rest = static_cast<T>(1 - gamma)](T g, int64_t i, const KernelData<T>& data) {
        T& grad_square = data.slot0[i];
        T& step_square = data.slot1[i];
        grad_square = grad_square * gamma + rest * g * g;
        const T update = g * std::sqrt(step_square + eps) / std::sqrt(grad_square + eps);
        step_square = step_square * gamma + rest * update * update;
        return update;
      };
    });
  }
};

}  // namespace

std::unique_ptr<Optimizer> make_adadelta(Loss loss, Params params, Options options) {
  return std::make_unique<Adadelta>(std::move(loss), std::move(params), std::move(options));
}

}  // namespace downhill::detail
