// Equilibrated SGD: D ← γD + (1−γ)(Hr)² with a fresh probe r ~ N(0, 1) each step;
// u = lr·g / (sqrt(D) + ε).
#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

class Esgd final : public BuiltinOptimizer {
 public:
  Esgd(Loss loss, Params params, Options options)
      : BuiltinOptimizer("ESGD", std::move(loss), std::move(params), std::move(options)) {}

  bool needs_hessian_vector_products() const override { return true; }

 protected:
  std::vector<std::string> state_names() const override { return {"D"}; }

  at::Tensor compute_update(size_t, const at::Tensor& grad, const at::Tensor& hv,
                            std::vector<at::Tensor>& state) override {
    auto& curvature = state[0];
    const double gamma = ewma_weight(options().rms_halflife());
    curvature.mul_(gamma).addcmul_(hv, hv, 1 - gamma);
    return grad * options().learning_rate() / (curvature.sqrt() + options().rms_regularizer());
  }

  bool fused_update(size_t index, const at::Tensor& grad, const at::Tensor& hv, double grad_scale,
                    double clip_elem) override {
    const double lr = options().learning_rate(), eps = options().rms_regularizer();
    const double gamma = ewma_weight(options().rms_halflife());
    return run_kernel(index, grad, hv, grad_scale, clip_elem, [=](auto scalar) {
      using T = typename decltype(scalar)::type;
      return [lr = static_cast<T>(lr), eps = static_cast<T>(eps), gamma = static_cast<T>(gamma),
              rest = static_cast<T>(1 - gamma)](T g, int64_t i, const KernelData<T>& data) {
        T& curvature = data.slot0[i];
        const T hv = data.hv[i];
        curvature = curvature * gamma + rest * hv * hv;
        return g * lr / (std::sqrt(curvature) + eps);
      };
    });
  }
};

}  // namespace

std::unique_ptr<Optimizer> make_esgd(Loss loss, Params params, Options options) {
  return std::make_unique<Esgd>(std::move(loss), std::move(params), std::move(options));
}

}  // namespace downhill::detail
