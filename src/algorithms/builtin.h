#pragma once
// What the built-in algorithms share: the factories registry.cpp lists, and a
// base class that hands a kernel to the fused driver.

#include <downhill/optimizer.h>

#include <memory>
#include <string>
#include <utility>

#include "update_stages.h"

namespace downhill::detail {

/// Base of the built-in algorithms: builds the fused driver's target for a parameter.
class BuiltinOptimizer : public Optimizer {
 protected:
  using Optimizer::Optimizer;

  /// Runs `make_kernel`'s elementwise kernel over parameter `index` in one fused pass
  /// (clipping and momentum included); false when the fused path does not apply.
  template <typename MakeKernel>
  bool run_kernel(size_t index, const at::Tensor& grad, const at::Tensor& hv, double grad_scale,
                  double clip_elem, MakeKernel&& make_kernel) {
    FusedTarget target;
    target.param = params().tensor(index);
    target.grad = grad;
    target.hv = hv;
    target.velocity = options().momentum() > 0 ? &velocity(index) : nullptr;
    target.slots = &slots(index);
    target.grad_scale = grad_scale;
    target.clip_elem = clip_elem;
    target.momentum = options().momentum();
    target.nesterov = nesterov();
    return run_fused(target, std::forward<MakeKernel>(make_kernel));
  }
};

std::unique_ptr<Optimizer> make_sgd(Loss loss, Params params, Options options);
std::unique_ptr<Optimizer> make_nag(Loss loss, Params params, Options options);
std::unique_ptr<Optimizer> make_rprop(Loss loss, Params params, Options options);
std::unique_ptr<Optimizer> make_rmsprop(Loss loss, Params params, Options options);
std::unique_ptr<Optimizer> make_adagrad(Loss loss, Params params, Options options);
std::unique_ptr<Optimizer> make_adadelta(Loss loss, Params params, Options options);
std::unique_ptr<Optimizer> make_esgd(Loss loss, Params params, Options options);
std::unique_ptr<Optimizer> make_adam(Loss loss, Params params, Options options);

}  // namespace downhill::detail
