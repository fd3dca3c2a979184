#pragma once
// A loss evaluated with its gradient at one point, kept so that the next update at that point
// starts from it instead of evaluating it again: L-BFGS's line search ends at a point it has
// evaluated, and a run on one batch of everything validates at the point its next update
// starts from. Internal.

#include <ATen/ATen.h>
#include <downhill/batch.h>
#include <downhill/monitors.h>
#include <downhill/params.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace downhill::detail {

/// One batch's loss as the loss function returned it, checked: the loss tensor, its monitors
/// ("loss" first), and the gradients (those the function returned, or autograd's once taken).
struct BatchEvaluation {
  at::Tensor loss;
  Monitors monitors;
  std::vector<at::Tensor> grads;
};

/// The kept point: its evaluation, and what it was evaluated of — the batch's tensors and
/// the parameters, each by identity and version counter, so that any in-place change of
/// either (set_params, a user's copy_) makes it stale. The handles keep the batch's tensors
/// alive, so that their identity cannot pass to other tensors meanwhile.
class EvaluationCache {
 public:
  /// Keeps `point`, evaluated of `batch` at the parameters as they stand now.
  void store(const Batch& batch, const Params& params, BatchEvaluation point);
  /// The kept point when it is of `batch` and the parameters are unchanged since; null
  /// otherwise.
  const BatchEvaluation* find(const Batch& batch, const Params& params) const;
  /// find(), taking the point out when it is there.
  std::optional<BatchEvaluation> take(const Batch& batch, const Params& params);
  void clear() noexcept;

 private:
  // A tensor's identity: its implementation and its version counter (nullopt for a tensor
  // that keeps none: an inference tensor, which is then never matched).
  struct Identity {
    const void* impl = nullptr;
    std::optional<int64_t> version;
    bool operator==(const Identity&) const = default;
  };
  static Identity identity(const at::Tensor& tensor);
  bool matches(const Batch& batch, const Params& params) const;

  Batch batch_;
  std::vector<Identity> batch_identity_;
  std::vector<Identity> param_identity_;
  std::optional<BatchEvaluation> point_;
};

}  // namespace downhill::detail
