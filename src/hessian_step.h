#pragma once
// What step() hands a rule that takes Hessian-vector products (ESGD); defined in
// hessian.cpp, with the products themselves. Internal.

#include <downhill/options.h>
#include <torch/types.h>

#include <vector>

namespace downhill::detail {

/// The gradients clipped inside the autograd graph as their groups' settings say (so that Hv is
/// that of the clipped gradient, as downhill computes it), and H·r for fresh probes r ~ N(0, 1).
struct ClippedProducts {
  std::vector<torch::Tensor> grads;  // clipped, detached
  std::vector<torch::Tensor> hvs;
};

/// `grads` were computed with create_graph = true. Gradient i is clipped as its parameter
/// group's settings say, `group_options[i]` (max_gradient_elem, max_gradient_norm); the
/// products are computed with `method`.
ClippedProducts clipped_gradients_and_products(const std::vector<torch::Tensor>& grads,
                                               const std::vector<torch::Tensor>& params,
                                               const std::vector<const Options*>& group_options,
                                               HvMethod method);

}  // namespace downhill::detail
