#include "hessian_step.h"

#include <downhill/hessian.h>

#include <cmath>

#include "update_stages.h"

namespace downhill::detail {

namespace {

// Clipped as the chain would clip it, but in the graph.
torch::Tensor clip_in_graph(const torch::Tensor& g, const Options& options) {
  if (options.max_gradient_elem() > 0) {
    return g.clamp(-options.max_gradient_elem(), options.max_gradient_elem());
  }
  if (options.max_gradient_norm() <= 0) return g;
  double norm = std::sqrt(sum_of_squares(g.detach()));
  if (std::isinf(norm)) norm = overflow_safe_norm(g.detach());  // NaN: the engine refuses it
  if (!(norm > options.max_gradient_norm())) return g;
  // Scaled by the largest element first, so that the norm cannot overflow (the constant
  // scale does not change its derivative).
  const auto largest = g.detach().abs().max();
  return g * (options.max_gradient_norm() / (largest * (g / largest).norm()));
}

}  // namespace

ClippedProducts clipped_gradients_and_products(const std::vector<torch::Tensor>& grads,
                                               const std::vector<torch::Tensor>& params,
                                               const Options& options) {
  ClippedProducts out;
  std::vector<torch::Tensor> probes;
  for (size_t i = 0; i < grads.size(); ++i) {
    out.grads.push_back(clip_in_graph(grads[i], options));
    probes.push_back(torch::randn_like(params[i]));
  }
  out.hvs = hessian_vector_products(out.grads, params, probes, options.hv_method());
  for (auto& g : out.grads) g = g.detach();
  return out;
}

}  // namespace downhill::detail
