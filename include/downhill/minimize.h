#pragma once
// downhill::minimize: the one-call interface (docs/guide.md's interfaces).

#include <downhill/batch.h>
#include <downhill/dataset.h>
#include <downhill/monitors.h>
#include <downhill/options.h>
#include <downhill/params.h>
#include <torch/types.h>

#include <concepts>
#include <functional>
#include <optional>
#include <utility>

namespace downhill {

/// A callable that returns a Batch each time it is called (and is not itself data).
template <typename F>
concept BatchGenerator = std::is_invocable_r_v<Batch, F&> && !std::is_convertible_v<F, Batch> &&
                         !std::is_convertible_v<F, torch::Tensor>;

/// Training or validation data for minimize(): a Dataset (used as it is, by
/// reference), a tensor, a Batch, or a generator callable returning a Batch (the
/// latter three are wrapped in a Dataset with the options' batch size and
/// train_batches / valid_batches).
class DataSource {
 public:
  DataSource(Dataset& dataset) : dataset_(&dataset) {}  // NOLINT
  /// A temporary dataset, kept for the call.
  DataSource(Dataset&& dataset) : owned_(std::move(dataset)) {}           // NOLINT
  DataSource(torch::Tensor tensor) : batch_(Batch{std::move(tensor)}) {}  // NOLINT
  DataSource(Batch batch) : batch_(std::move(batch)) {}                   // NOLINT
  template <BatchGenerator F>
  DataSource(F generator) : generator_(std::move(generator)) {}  // NOLINT

  /// The dataset to use: the one given, or one made with `options` (its name
  /// and iteration size set from them).
  Dataset& resolve(DatasetOptions options);

 private:
  Dataset* dataset_ = nullptr;
  std::optional<Batch> batch_;
  std::function<Batch()> generator_;
  std::optional<Dataset> owned_;
};

/// Minimizes `loss` over `params` on `train`, validating on the training data.
/// Builds options.algo() and runs the loop to its end; returns the last
/// (training, validation) monitors.
std::pair<Monitors, Monitors> minimize(const Loss& loss, Params params, DataSource train,
                                       const Options& options = {});
/// As above, validating on `valid`.
std::pair<Monitors, Monitors> minimize(const Loss& loss, Params params, DataSource train,
                                       DataSource valid, const Options& options = {});
/// As above, with the parameters found in the autograd graph of the loss on the
/// first training batch: every leaf that requires grad, named unnamed0, unnamed1, ...
std::pair<Monitors, Monitors> minimize(const Loss& loss, DataSource train,
                                       const Options& options = {});

/// The leaf tensors requiring grad that `loss` depends on, in a deterministic
/// order (depth-first from the loss, following each node's inputs in order),
/// named unnamed0, unnamed1, ...
Params discover_params(const torch::Tensor& loss);

}  // namespace downhill
