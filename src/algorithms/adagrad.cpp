// ADAGRAD: G ← G + g²; u = lr·g / sqrt(G + ε).
#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

class Adagrad final : public BuiltinOptimizer {
 public:
  Adagrad(Loss loss, Params params, Options options)
      : BuiltinOptimizer("ADAGRAD", std::move(loss), std::move(params), std::move(options)) {}

 protected:
  std::vector<std::string> state_names() const override { return {"G"}; }

  at::Tensor compute_update(size_t, const at::Tensor& grad, const at::Tensor&,
                            std::vector<at::Tensor>& state) override {
    auto& sum_squares = state[0];
    sum_squares.addcmul_(grad, grad);
    return grad * options().learning_rate() / (sum_squares + options().rms_regularizer()).sqrt();
  }

  bool fused_update(size_t index, const at::Tensor& grad, const at::Tensor& hv, double grad_scale,
                    double clip_elem) override {
    const double lr = options().learning_rate(), eps = options().rms_regularizer();
    return run_kernel(index, grad, hv, grad_scale, clip_elem, [lr, eps](auto scalar) {
      using T = typename decltype(scalar)::type;
      return [lr = static_cast<T>(lr), eps = static_cast<T>(eps)](T g, int64_t i,
                                                                  const KernelData<T>& data) {
        T& sum_squares = data.slot0[i];
        sum_squares = sum_squares + g * g;
        return g * lr / std::sqrt(sum_squares + eps);
      };
    });
  }
};

}  // namespace

std::unique_ptr<Optimizer> make_adagrad(Loss loss, Params params, Options options) {
  return std::make_unique<Adagrad>(std::move(loss), std::move(params), std::move(options));
}

}  // namespace downhill::detail
