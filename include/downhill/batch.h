#pragma once
// The data of one mini-batch, and what a loss function returns for it.

#include <torch/types.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace downhill {

/// The inputs of one mini-batch, in a fixed order (for example `{features, labels}`).
using Batch = std::vector<torch::Tensor>;

/// What a loss function returns: the scalar loss and, optionally, named scalar
/// monitors that are reported beside it, and the gradient when you compute it yourself.
/// Implicitly constructible from a lone loss.
struct Evaluation {
  /// A loss without monitors.
  Evaluation(torch::Tensor loss) : loss(std::move(loss)) {}  // NOLINT: implicit by design
  /// A loss with named scalar monitors, reported in this order after "loss".
  Evaluation(torch::Tensor loss, std::vector<std::pair<std::string, torch::Tensor>> monitors)
      : loss(std::move(loss)), monitors(std::move(monitors)) {}
  /// A loss with its gradient, computed by you (docs/guide.md, "Your own gradients"): one
  /// tensor per parameter, in the order of the optimizer's params(), each of its parameter's
  /// shape, dtype and device (a frozen group's may be undefined). downhill then uses them
  /// instead of differentiating `loss`, which need not require grad.
  static Evaluation with_gradients(
      torch::Tensor loss, std::vector<torch::Tensor> gradients,
      std::vector<std::pair<std::string, torch::Tensor>> monitors = {}) {
    Evaluation evaluation(std::move(loss), std::move(monitors));
    evaluation.gradients = std::move(gradients);
    return evaluation;
  }
  /// As with_gradients(loss, gradients, monitors), the loss given as a number: no tensor is
  /// made for it (`loss` stays undefined; `value` holds it).
  static Evaluation with_gradients(
      double value, std::vector<torch::Tensor> gradients,
      std::vector<std::pair<std::string, torch::Tensor>> monitors = {}) {
    Evaluation evaluation(torch::Tensor(), std::move(monitors));
    evaluation.value = value;
    evaluation.gradients = std::move(gradients);
    return evaluation;
  }

  /// A scalar floating-point tensor: it depends on the parameters, unless `gradients` is given.
  torch::Tensor loss;
  /// Named scalars to report; each must have exactly one element.
  std::vector<std::pair<std::string, torch::Tensor>> monitors;
  /// The gradient of the loss, when the loss function computes it (with_gradients()); empty
  /// otherwise, and downhill differentiates the loss.
  std::vector<torch::Tensor> gradients;
  /// The loss as a number, when with_gradients(value, ...) gave it so; `loss` is then
  /// undefined.
  std::optional<double> value;
};

/// A loss function: evaluates one mini-batch.
using Loss = std::function<Evaluation(const Batch&)>;

}  // namespace downhill
