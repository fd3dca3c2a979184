// SGD: u = lr·g.
#include "algorithms/sgd.h"

namespace downhill::detail {

Sgd::Sgd(Loss loss, Params params, Options options, std::string name)
    : BuiltinOptimizer(std::move(name), std::move(loss), std::move(params), std::move(options)) {}

at::Tensor Sgd::compute_update(size_t, const at::Tensor& grad, const at::Tensor&,
                               std::vector<at::Tensor>&) {
  return grad * options().learning_rate();
}

bool Sgd::fused_update(size_t index, const at::Tensor& grad, const at::Tensor& hv,
                       double grad_scale, double clip_elem) {
  const double lr = options().learning_rate();
  return run_kernel(index, grad, hv, grad_scale, clip_elem, [lr](auto scalar) {
    using T = typename decltype(scalar)::type;
    return [lr = static_cast<T>(lr)](T g, int64_t, const KernelData<T>&) { return g * lr; };
  });
}

std::unique_ptr<Optimizer> make_sgd(Loss loss, Params params, Options options) {
  return std::make_unique<Sgd>(std::move(loss), std::move(params), std::move(options));
}

}  // namespace downhill::detail
