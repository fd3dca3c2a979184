#pragma once
// Block-diagonal Hessian-vector products, as ESGD uses them.

#include <downhill/options.h>
#include <torch/types.h>

#include <vector>

namespace downhill {

/// For each parameter i, H_ii · probes[i], where H_ii is the block of the Hessian
/// for parameter i. `grads` must be the gradients of the loss with respect to
/// `params`, computed with create_graph = true (possibly clipped, differentiably).
/// The three methods agree for a twice-differentiable loss.
std::vector<torch::Tensor> hessian_vector_products(const std::vector<torch::Tensor>& grads,
                                                   const std::vector<torch::Tensor>& params,
                                                   const std::vector<torch::Tensor>& probes,
                                                   HvMethod method);

}  // namespace downhill
