#pragma once
// The data of one mini-batch, and what a loss function returns for it.

#include <torch/types.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace downhill {

/// The inputs of one mini-batch, in a fixed order (for example `{features, labels}`).
using Batch = std::vector<torch::Tensor>;

/// What a loss function returns: the scalar loss and, optionally, named scalar
/// monitors that are reported beside it. Implicitly constructible from a lone loss.
struct Evaluation {
  /// A loss without monitors.
  Evaluation(torch::Tensor loss) : loss(std::move(loss)) {}  // NOLINT: implicit by design
  /// A loss with named scalar monitors, reported in this order after "loss".
  Evaluation(torch::Tensor loss, std::vector<std::pair<std::string, torch::Tensor>> monitors)
      : loss(std::move(loss)), monitors(std::move(monitors)) {}

  /// A scalar floating-point tensor that depends on the parameters.
  torch::Tensor loss;
  /// Named scalars to report; each must have exactly one element.
  std::vector<std::pair<std::string, torch::Tensor>> monitors;
};

/// A loss function: evaluates one mini-batch.
using Loss = std::function<Evaluation(const Batch&)>;

}  // namespace downhill
