#include <downhill/detail/update_chain.h>
#include <downhill/hessian.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "hessian_step.h"
#include "update_stages.h"

namespace downhill {

namespace {

// A gradient that does not depend on its parameter has a zero Hessian block.
torch::Tensor or_zeros(const torch::Tensor& result, const torch::Tensor& like) {
  return result.defined() ? result.detach() : torch::zeros_like(like);
}

}  // namespace

std::vector<torch::Tensor> hessian_vector_products(const std::vector<torch::Tensor>& grads,
                                                   const std::vector<torch::Tensor>& params,
                                                   const std::vector<torch::Tensor>& probes,
                                                   HvMethod method) {
  if (grads.size() != params.size() || probes.size() != params.size()) {
    throw std::invalid_argument(
        "downhill: hessian_vector_products needs one gradient and one "
        "probe per parameter; got " +
        std::to_string(grads.size()) + " gradients and " + std::to_string(probes.size()) +
        " probes for " + std::to_string(params.size()) + " parameters");
  }
  std::vector<torch::Tensor> out;
  out.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& g = grads[i];
    const auto& p = params[i];
    const auto& r = probes[i];
    if (!g.requires_grad()) {
      out.push_back(torch::zeros_like(p));
      continue;
    }
    torch::Tensor hv;
    switch (method) {
      case HvMethod::kGrad: {
        // ∂(g·r)/∂p = H r.
        hv = torch::autograd::grad({(g * r).sum()}, {p}, {}, /*retain_graph=*/true,
                                   /*create_graph=*/false, /*allow_unused=*/true)[0];
        break;
      }
      case HvMethod::kLop: {
        // rᵀ ∂g/∂p = rᵀH, which is H r for a symmetric Hessian.
        hv = torch::autograd::grad({g}, {p}, {r}, /*retain_graph=*/true, /*create_graph=*/false,
                                   /*allow_unused=*/true)[0];
        break;
      }
      case HvMethod::kRop: {
        // (∂g/∂p) r through two vector-Jacobian products: with a dummy v,
        // z = vᵀ ∂g/∂p is linear in v, and ∂(z·r)/∂v = (∂g/∂p) r.
        auto dummy = torch::zeros_like(g).requires_grad_(true);
        auto vjp = torch::autograd::grad({g}, {p}, {dummy}, /*retain_graph=*/true,
                                         /*create_graph=*/true, /*allow_unused=*/true)[0];
        if (vjp.defined() && vjp.requires_grad()) {
          hv = torch::autograd::grad({vjp}, {dummy}, {r}, /*retain_graph=*/false,
                                     /*create_graph=*/false, /*allow_unused=*/true)[0];
        }
        break;
      }
    }
    out.push_back(or_zeros(hv, p));
  }
  return out;
}

}  // namespace downhill

// What step() hands a rule that takes Hessian-vector products (hessian_step.h).
namespace downhill::detail {

namespace {

// Clipped by the chain's own clipping stages, but in the graph: per element, or by the
// parameter's norm (the global norm is left to the engine).
torch::Tensor clip_in_graph(const torch::Tensor& g, const Options& options) {
  const auto dtype = g.scalar_type();
  if (options.max_gradient_elem() > 0) {
    ChainSettings settings;
    settings.clip_elem = options.max_gradient_elem();
    return ClipElements<at::Tensor>(settings, dtype)(g);
  }
  if (options.max_gradient_norm() <= 0) return g;
  double norm = std::sqrt(sum_of_squares(g.detach()));
  if (std::isinf(norm)) norm = overflow_safe_norm(g.detach());  // NaN: the engine refuses it
  if (!(norm > options.max_gradient_norm())) return g;
  // The factor stays in the graph (Hv is that of the clipped gradient), computed with the
  // norm scaled by the largest element first, so that it cannot overflow (the constant
  // scale does not change its derivative).
  const auto largest = g.detach().abs().max();
  const auto factor = options.max_gradient_norm() / (largest * (g / largest).norm());
  return ScaleGradient<at::Tensor>(factor, chain_constant<at::Tensor>(1.0, dtype))(g);
}

}  // namespace

ClippedProducts clipped_gradients_and_products(const std::vector<torch::Tensor>& grads,
                                               const std::vector<torch::Tensor>& params,
                                               const std::vector<const Options*>& group_options,
                                               HvMethod method) {
  ClippedProducts out;
  std::vector<torch::Tensor> probes;
  for (size_t i = 0; i < grads.size(); ++i) {
    out.grads.push_back(clip_in_graph(grads[i], *group_options.at(i)));
    probes.push_back(torch::randn_like(params[i]));
  }
  out.hvs = hessian_vector_products(out.grads, params, probes, method);
  for (auto& g : out.grads) g = g.detach();
  return out;
}

}  // namespace downhill::detail
