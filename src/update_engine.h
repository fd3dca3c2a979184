#pragma once
// The update engine: the parameters, the algorithm's rule and its state, the update
// counter, and the path of one update — the one read of each gradient (finiteness and
// norm), then the rule's chain over each parameter. Internal; Optimizer is its facade.

#include <downhill/detail/rule_runner.h>
#include <downhill/optimizer.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "archive_io.h"

namespace downhill::detail {

/// The engine's part of a checkpoint, read and checked, not yet applied.
struct EngineSnapshot {
  std::vector<at::Tensor> values;              // the parameters
  std::vector<std::vector<at::Tensor>> state;  // the rule's slots per parameter
  std::vector<at::Tensor> velocity;            // undefined without momentum
  int64_t update_count = 0;
};

class UpdateEngine {
 public:
  /// Checks `options` and `params` (std::invalid_argument); `needs_grad` when a loss will
  /// differentiate them.
  UpdateEngine(std::string name, Params params, Options options, std::unique_ptr<UpdateRule> rule,
               bool needs_grad);

  const std::string& name() const noexcept { return name_; }
  const Params& params() const noexcept { return params_; }
  const Options& options() const noexcept { return options_; }
  const UpdateRule& rule() const noexcept { return *rule_; }

  /// Throws std::invalid_argument unless `tensors` has one tensor per parameter, each of
  /// its parameter's shape, dtype and device; `what` names them ("gradient").
  void check_tensors(const std::vector<at::Tensor>& tensors, const char* what) const;
  /// One update from checked gradients (and Hessian-vector products when the rule takes
  /// them). `already_clipped`: the gradients were clipped upstream (ESGD clips in the
  /// graph). Returns false, changing nothing, when any input is not finite.
  bool apply(const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& hvs,
             bool already_clipped, bool nesterov);
  /// Records a skipped update (logged as a warning).
  void skip(const std::string& reason);

  /// Copies checked `values` into the parameters.
  void set_params(const std::vector<at::Tensor>& values);
  NamedTensors state();
  std::vector<at::Tensor>& slots(size_t index);
  at::Tensor& velocity(size_t index);
  int64_t update_count() const noexcept { return update_count_; }
  bool last_update_applied() const noexcept { return last_update_applied_; }
  const std::string& last_skip_reason() const noexcept { return last_skip_reason_; }

  /// Checkpoints: the engine writes and reads its own entries; read() checks everything
  /// against this engine (calling `mismatch`) and changes nothing; commit() applies.
  void save(torch::serialize::OutputArchive& archive);
  EngineSnapshot read(torch::serialize::InputArchive& archive, const Mismatch& mismatch);
  void commit(EngineSnapshot&& snapshot);

 private:
  void ensure_state();
  // The one read of each gradient: false (after skip()) when one is not finite.
  bool read_gradients(const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& hvs);

  std::string name_;
  Params params_;
  Options options_;
  std::unique_ptr<UpdateRule> rule_;
  std::vector<std::vector<at::Tensor>> state_;
  std::vector<at::Tensor> velocity_;
  std::vector<double> grad_norms_;  // a member, so that an update allocates nothing
  int64_t update_count_ = 0;
  bool last_update_applied_ = true;
  std::string last_skip_reason_;
};

}  // namespace downhill::detail
