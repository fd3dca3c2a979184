#include "evaluation_cache.h"

#include <utility>

namespace downhill::detail {

EvaluationCache::Identity EvaluationCache::identity(const at::Tensor& tensor) {
  if (!tensor.defined()) return {};
  Identity out{tensor.unsafeGetTensorImpl(), std::nullopt};
  if (!tensor.is_inference()) out.version = tensor._version();
  return out;
}

void EvaluationCache::store(const Batch& batch, const Params& params, BatchEvaluation point) {
  batch_ = batch;
  batch_identity_.clear();
  for (const auto& tensor : batch) batch_identity_.push_back(identity(tensor));
  param_identity_.clear();
  for (const auto& [name, tensor] : params) param_identity_.push_back(identity(tensor));
  point_ = std::move(point);
}

bool EvaluationCache::matches(const Batch& batch, const Params& params) const {
  if (!point_ || batch.size() != batch_identity_.size() ||
      params.size() != param_identity_.size()) {
    return false;
  }
  const auto unchanged = [](const Identity& kept, const at::Tensor& tensor) {
    const Identity now = identity(tensor);
    return now == kept && (now.version || !tensor.defined());
  };
  for (size_t k = 0; k < batch.size(); ++k) {
    if (!unchanged(batch_identity_[k], batch[k])) return false;
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (!unchanged(param_identity_[i], params.tensor(i))) return false;
  }
  return true;
}

const BatchEvaluation* EvaluationCache::find(const Batch& batch, const Params& params) const {
  return matches(batch, params) ? &*point_ : nullptr;
}

std::optional<BatchEvaluation> EvaluationCache::take(const Batch& batch, const Params& params) {
  if (!matches(batch, params)) return std::nullopt;
  std::optional<BatchEvaluation> out = std::move(point_);
  clear();
  return out;
}

void EvaluationCache::clear() noexcept {
  if (!point_) return;  // apply() calls it at every update
  point_.reset();
  batch_.clear();
  batch_identity_.clear();
  param_identity_.clear();
}

}  // namespace downhill::detail
