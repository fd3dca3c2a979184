// Finding the parameters of a loss by walking its autograd graph.
#include <downhill/minimize.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>

#include <stdexcept>
#include <unordered_set>

namespace downhill {

Params discover_params(const torch::Tensor& loss) {
  if (!loss.defined() || !loss.requires_grad()) {
    throw std::invalid_argument(
        "downhill: cannot find parameters: the loss does not depend on any tensor that "
        "requires grad");
  }
  std::vector<Params::Entry> found;
  if (!loss.grad_fn()) {  // the loss is itself a leaf
    found.emplace_back("unnamed0", loss);
    return Params(std::move(found));
  }
  // Depth-first from the loss, visiting each node's inputs in order, so the
  // order is the same for the same expression every time.
  std::unordered_set<const torch::autograd::Node*> visited;
  std::vector<torch::autograd::Node*> stack{loss.grad_fn().get()};
  while (!stack.empty()) {
    auto* node = stack.back();
    stack.pop_back();
    if (!visited.insert(node).second) continue;
    if (auto* leaf = dynamic_cast<torch::autograd::AccumulateGrad*>(node)) {
      found.emplace_back("unnamed" + std::to_string(found.size()), leaf->variable);
      continue;
    }
    const auto& edges = node->next_edges();
    for (auto it = edges.rbegin(); it != edges.rend(); ++it) {
      if (it->function) stack.push_back(it->function.get());
    }
  }
  return Params(std::move(found));
}

}  // namespace downhill
