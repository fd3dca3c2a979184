#pragma once
// What step() hands a rule that takes Hessian-vector products (ESGD); defined in
// hessian.cpp, with the products themselves. Internal.

#include <downhill/options.h>
#include <torch/types.h>

#include <vector>

namespace downhill::detail {

/// The gradients clipped inside the autograd graph as `options` say (so that Hv is that of
/// the clipped gradient, as downhill computes it), and H·r for fresh probes r ~ N(0, 1).
struct ClippedProducts {
  std::vector<torch::Tensor> grads;  // clipped, detached
  std::vector<torch::Tensor> hvs;
};

/// `grads` were computed with create_graph = true.
ClippedProducts clipped_gradients_and_products(const std::vector<torch::Tensor>& grads,
                                               const std::vector<torch::Tensor>& params,
                                               const Options& options);

}  // namespace downhill::detail
