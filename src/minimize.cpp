#include <downhill/logging.h>
#include <downhill/minimize.h>
#include <downhill/optimizer.h>
#include <downhill/phase.h>
#include <downhill/registry.h>
#include <spdlog/spdlog.h>

#include "algorithms/builtin.h"

namespace downhill {

Dataset& DataSource::resolve(DatasetOptions options) {
  if (dataset_) return *dataset_;
  if (!owned_) {  // a tensor, a Batch or a generator: wrap it now
    if (batch_) {
      owned_.emplace(*batch_, std::move(options));
    } else {  // a generator; Dataset refuses an empty one
      owned_.emplace(generator_, std::move(options));
    }
  }
  return *owned_;
}

namespace {

DatasetOptions wrap_options(const Options& given, const char* name,
                            const std::optional<int64_t>& batches) {
  const Options options = detail::with_algorithm_defaults(given);  // L-BFGS's full_batch
  auto out =
      DatasetOptions().name(name).batch_size(options.full_batch() ? 0 : options.batch_size());
  if (batches) out.iteration_size(*batches);
  return out;
}

std::pair<Monitors, Monitors> run(const Loss& loss, Params params, Dataset& train, Dataset* valid,
                                  const Options& options) {
  auto optimizer = build(options.algo(), loss, std::move(params), options);
  return optimizer->minimize(train, valid);
}

}  // namespace

std::pair<Monitors, Monitors> minimize(const Loss& loss, Params params, DataSource train,
                                       const Options& options) {
  options.validate();
  auto& train_data = train.resolve(wrap_options(options, "train", options.train_batches()));
  return run(loss, std::move(params), train_data, nullptr, options);
}

std::pair<Monitors, Monitors> minimize(const Loss& loss, Params params, DataSource train,
                                       DataSource valid, const Options& options) {
  options.validate();
  auto& train_data = train.resolve(wrap_options(options, "train", options.train_batches()));
  auto& valid_data = valid.resolve(wrap_options(options, "valid", options.valid_batches()));
  return run(loss, std::move(params), train_data, &valid_data, options);
}

std::pair<Monitors, Monitors> minimize(const Loss& loss, DataSource train, const Options& options) {
  options.validate();
  auto& train_data = train.resolve(wrap_options(options, "train", options.train_batches()));
  Params params = [&] {
    const detail::PhaseScope phase(Phase::kTraining);
    return discover_params(loss(train_data.peek()).loss);
  }();
  std::string names;
  for (const auto& [name, tensor] : params) names += (names.empty() ? "" : ", ") + name;
  logger()->info("found {} parameters in the loss: {}", params.size(), names);
  return run(loss, std::move(params), train_data, nullptr, options);
}

}  // namespace downhill
