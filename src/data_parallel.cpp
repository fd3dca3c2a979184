#include "data_parallel.h"

#include <ATen/CPUGeneratorImpl.h>
#include <downhill/dataset.h>
#include <downhill/logging.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <mutex>
#include <stdexcept>
#include <variant>

#include "log_pattern.h"
#include "loop_state.h"
#include "settings_table.h"
#include "text.h"
#include "update_engine.h"

namespace downhill::detail {

namespace {

// What every rank's optimizer must share: the algorithm, the parameters and the settings.
std::vector<std::string> optimizer_lines(const UpdateEngine& engine) {
  std::vector<std::string> lines{"algorithm " + engine.name()};
  const auto& params = engine.params();
  for (size_t i = 0; i < params.size(); ++i) {
    const size_t group = params.group_of(i);
    lines.push_back("parameter '" + params.name(i) + "' " + describe(params.tensor(i)) +
                    ", group " + std::to_string(group) +
                    (params.is_frozen(group) ? " (frozen)" : ""));
  }
  for (size_t g = 0; g < params.group_count(); ++g) {
    const auto& options = engine.group_options(g);
    for (const SettingId id : setting_ids()) {
      const auto& spec = setting_spec(id);
      if (!spec.agreed) continue;
      lines.push_back("group " + std::to_string(g) + " setting " + spec.name + " = " +
                      setting_text(spec, options.value(id)));
    }
  }
  return lines;
}

std::string dataset_line(const Dataset& data) {
  return "dataset '" + data.name() + "': " +
         (data.walks()              ? std::string("a range")
          : data.slice_count() == 0 ? std::string("a generator")
                                    : std::to_string(data.slice_count()) + " slices, order of " +
                                          std::to_string(data.order().size())) +
         ", " + std::to_string(data.iteration_size()) + " batches per pass";
}

// Rank 0's state of `generator` into every rank's.
void broadcast_generator(Communicator& comm, at::Generator generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  std::vector<at::Tensor> state{generator.get_state()};
  comm.broadcast(state);
  generator.set_state(state[0]);
}

}  // namespace

const Agreement& DataParallel::update_agreement(const UpdateEngine& engine) {
  const int64_t t = engine.update_count();
  agreement_.values.assign(1, static_cast<double>(t));
  agreed_settings_.clear();
  const auto& params = engine.params();
  for (size_t g = 0; g < params.group_count(); ++g) {
    if (params.is_frozen(g)) continue;
    const auto& options = engine.group_options(g);
    for (const SettingId id : function_settings_) {
      const auto& function = std::get<Schedule>(options.value(id));
      if (!function) continue;
      agreement_.values.push_back(function(t));
      agreed_settings_.emplace_back(g, id);
    }
  }
  agreement_.name_of = [this, t, groups = params.group_count()](size_t k) -> std::string {
    if (k == 0) return "the number of updates so far";
    const auto [group, id] = agreed_settings_[k - 1];
    return setting_spec(id).name + "(" + std::to_string(t) + ")" +
           (groups > 1 ? " of group " + std::to_string(group) : "");
  };
  return agreement_;
}

std::unique_ptr<DataParallel> DataParallel::join(UpdateEngine& engine) {
  const auto& options = engine.options();
  if (!options.data_parallel()) return nullptr;
  std::unique_ptr<DataParallel> parallel(new DataParallel(Communicator::join(options)));
  auto& comm = *parallel->comm_;
  if (comm.size() == 1) return parallel;
  comm.check_same(optimizer_lines(engine), "optimizers");
  // The settings that are functions, which build could only see set or not: those of the
  // table now, which holds every setting this optimizer's rule reads.
  for (const SettingId id : setting_ids()) {
    const auto& spec = setting_spec(id);
    if (spec.agreed && std::holds_alternative<Schedule>(spec.default_value)) {
      parallel->function_settings_.push_back(id);
    }
  }
  auto values = engine.params().tensors();
  comm.broadcast(values);
  // One rank speaks for the group; the others only warn, and say which rank they are.
  if (comm.rank() != 0) {
    if (logger()->level() < spdlog::level::warn) logger()->set_level(spdlog::level::warn);
    tag_rank(comm.rank());
  }
  return parallel;
}

void DataParallel::average_with(const UpdateEngine& engine, std::vector<at::Tensor>& grads,
                                std::vector<at::Tensor>& hvs, StepFlags& flags) {
  const auto& params = engine.params();
  const size_t n = grads.size();
  sent_.assign(n + hvs.size(), at::Tensor());
  for (size_t i = 0; i < n; ++i) {
    if (params.is_frozen(params.group_of(i))) continue;
    sent_[i] = grads[i];
    if (!hvs.empty()) sent_[n + i] = hvs[i];
  }
  std::vector<double> sums{flags.nonfinite_losses, flags.interrupts};
  const auto means = comm_->average(sent_, sums, update_agreement(engine));
  for (size_t i = 0; i < n; ++i) {
    if (!sent_[i].defined()) continue;
    grads[i] = means[i];
    if (!hvs.empty()) hvs[i] = means[n + i];
  }
  sent_.clear();  // no handle on the caller's tensors between steps
  flags = {sums[0], sums[1]};
}

bool DataParallel::reduce(UpdateEngine& engine, std::vector<at::Tensor>& grads,
                          std::vector<at::Tensor>& hvs, StepFlags& flags) {
  const bool completes_window = engine.window_count() + 1 >= engine.options().accumulate();
  if (completes_window) {
    engine.add_to_window(grads);
    average_with(engine, grads, hvs, flags);
  } else {
    std::vector<double> sums{flags.nonfinite_losses, flags.interrupts};
    comm_->sum(sums, "agreeing on the step");
    flags = {sums[0], sums[1]};
  }
  if (flags.nonfinite_losses > 0) return false;
  if (!completes_window) engine.add_to_window(grads);
  return completes_window;
}

void DataParallel::average(const UpdateEngine& engine, std::vector<at::Tensor>& grads,
                           std::vector<at::Tensor>& hvs) {
  StepFlags flags;
  average_with(engine, grads, hvs, flags);
}

std::string DataParallel::nonfinite_loss(const StepFlags& flags, double loss) const {
  return "non-finite loss on " + format_number(flags.nonfinite_losses) + " of " +
         std::to_string(comm_->size()) + " ranks" +
         (std::isfinite(loss) ? "" : " (here " + std::to_string(loss) + ")");
}

void DataParallel::agree(PassProgress& totals) {
  std::vector<std::string> names;
  for (const auto& entry : totals.sums) names.push_back(entry.name);
  comm_->check_same(names, "monitors");
  std::vector<double> values{totals.weight};
  for (const auto& entry : totals.sums) {
    values.push_back(entry.sum);
    values.push_back(entry.weight);
  }
  comm_->sum(values, "averaging monitors");
  totals.weight = values[0];
  for (size_t m = 0; m < totals.sums.size(); ++m) {
    totals.sums[m].sum = values[1 + 2 * m];
    totals.sums[m].weight = values[2 + 2 * m];
  }
}

double DataParallel::count(bool answer, const std::string& question) {
  std::vector<double> count{answer ? 1.0 : 0.0};
  comm_->sum(count, "agreeing whether " + question);
  return count[0];
}

bool DataParallel::any(bool answer, const std::string& question) {
  return count(answer, question) > 0;
}

bool DataParallel::unanimous(bool answer, const std::string& question) {
  const double yes = count(answer, question);
  if (yes > 0 && yes < static_cast<double>(comm_->size())) {
    throw std::runtime_error("downhill: distributed: " + question + " on " + format_number(yes) +
                             " of " + std::to_string(comm_->size()) +
                             " ranks only; every rank must see the same files (a shared folder)");
  }
  return yes > 0;
}

void DataParallel::start_run(Dataset& train, Dataset* valid) {
  logger()->info("data-parallel over {} processes ({}): each rank takes 1 batch in {}",
                 comm_->size(), comm_->backend(), comm_->size());
  std::vector<Dataset*> datasets{&train};
  if (valid && valid != &train) datasets.push_back(valid);
  std::vector<std::string> lines;
  for (auto* data : datasets) {
    data->shard(comm_->rank(), comm_->size());
    lines.push_back(dataset_line(*data));
  }
  comm_->check_same(lines, "datasets");
  for (auto* data : datasets) {
    if (data->slice_count() > 0) {
      // The order and position travel together: [order..., position].
      auto order = data->order();
      order.push_back(data->position());
      std::vector<at::Tensor> shared{at::tensor(order, at::kLong)};
      comm_->broadcast(shared);
      const auto* values = shared[0].data_ptr<int64_t>();
      const auto count = static_cast<int64_t>(shared[0].numel()) - 1;
      data->restore_position(std::vector<int64_t>(values, values + count), values[count]);
    }
    if (data->options().generator()) broadcast_generator(*comm_, *data->options().generator());
  }
  broadcast_generator(*comm_, at::detail::getDefaultCPUGenerator());
}

}  // namespace downhill::detail
