// RProp (iRprop−): per-element step sizes that grow while the gradient keeps its
// sign and shrink when it flips; a flipped gradient is zeroed for that update.
#include "algorithms/builtin.h"

namespace downhill::detail {

namespace {

class RProp final : public BuiltinOptimizer {
 public:
  RProp(Loss loss, Params params, Options options)
      : BuiltinOptimizer("RProp", std::move(loss), std::move(params), std::move(options)) {}

 protected:
  std::vector<std::string> state_names() const override { return {"grad_prev", "step"}; }

  at::Tensor initial_state(size_t slot, const at::Tensor& param) const override {
    if (slot == 1) {
      return at::full_like(param, options().learning_rate(), at::MemoryFormat::Contiguous);
    }
    return at::zeros_like(param, at::MemoryFormat::Contiguous);
  }

  at::Tensor compute_update(size_t, const at::Tensor& grad, const at::Tensor&,
                            std::vector<at::Tensor>& state) override {
    auto& grad_prev = state[0];
    auto& step = state[1];
    const auto& o = options();
    const auto agreement = grad * grad_prev;
    auto constant = [&](double value) { return at::scalar_tensor(value, grad.options()); };
    const auto factor =
        at::where(agreement > 0, constant(o.rprop_increase()),
                  at::where(agreement < 0, constant(o.rprop_decrease()), constant(1.0)));
    step.copy_((step * factor).clamp(o.rprop_min_step(), o.rprop_max_step()));
    const auto kept = at::where(agreement < 0, at::zeros_like(grad), grad);
    grad_prev.copy_(kept);
    return kept.sign() * step;
  }

  bool fused_update(size_t index, const at::Tensor& grad, const at::Tensor& hv, double grad_scale,
                    double clip_elem) override {
    const auto& o = options();
    return run_kernel(index, grad, hv, grad_scale, clip_elem, [&o](auto scalar) {
      using T = typename decltype(scalar)::type;
      return [increase = static_cast<T>(o.rprop_increase()),
              decrease = static_cast<T>(o.rprop_decrease()),
              min_step = static_cast<T>(o.rprop_min_step()),
              max_step = static_cast<T>(o.rprop_max_step())](T g, int64_t i,
                                                             const KernelData<T>& data) {
        T& grad_prev = data.slot0[i];
        T& step = data.slot1[i];
        const T agreement = g * grad_prev;
        const T factor = agreement > 0 ? increase : (agreement < 0 ? decrease : T(1));
        step = std::min(std::max(step * factor, min_step), max_step);
        const T kept = agreement < 0 ? T(0) : g;
        grad_prev = kept;
        // sign(kept) as ATen computes it, (0 < x) − (x < 0), in T: unlike a nested
        // conditional, GCC vectorizes this.
        const T sign = static_cast<T>(kept > 0) - static_cast<T>(kept < 0);
        return sign * step;
      };
    });
  }
};

}  // namespace

std::unique_ptr<Optimizer> make_rprop(Loss loss, Params params, Options options) {
  return std::make_unique<RProp>(std::move(loss), std::move(params), std::move(options));
}

}  // namespace downhill::detail
