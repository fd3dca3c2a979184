#include "data_parallel.h"

#include <ATen/CPUGeneratorImpl.h>
#include <downhill/dataset.h>
#include <downhill/logging.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <cmath>
#include <functional>
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

// The step whose backward pass is running, for the hooks (null between steps: then the hooks
// leave every gradient to autograd, as for a backward() of the user's own).
struct DataParallel::HookTarget {
  Average* current = nullptr;
};

class DataParallel::Average final : public OverlappedAverage {
 public:
  Average(DataParallel& owner, const UpdateEngine& engine)
      : owner_(owner), engine_(engine), local_(engine.params().size()) {
    owner_.hook_target_->current = this;
  }
  ~Average() override { disarm(); }

  // A hook's call: parameter `index`'s gradient, computed.
  void give(size_t index, const at::Tensor& grad) {
    if (index >= local_.size() || local_[index].defined()) return;
    local_[index] = grad;
    arrival_.push_back(index);
    owner_.comm_->give(index, grad);
  }

  void finish(std::vector<at::Tensor>& local, std::vector<at::Tensor>& means,
              StepFlags& flags) override {
    disarm();
    std::vector<double> sums{flags.nonfinite_losses, flags.interrupts};
    auto averaged = owner_.comm_->finish_average(sums);
    flags = {sums[0], sums[1]};
    const auto& params = engine_.params();
    means.assign(local_.size(), at::Tensor());
    for (size_t i = 0; i < local_.size(); ++i) {
      if (averaged[i].defined()) {
        means[i] = averaged[i];
      } else {  // a frozen parameter's: as autograd gave it, or zeros
        means[i] = local_[i].defined() ? local_[i] : at::zeros_like(params.tensor(i));
      }
    }
    if (owner_.bucket_order_.empty()) adopt_arrival_order();
    local = std::move(local_);
  }

 private:
  void disarm() {
    if (owner_.hook_target_->current == this) owner_.hook_target_->current = nullptr;
  }

  // After the first overlapped step, the buckets follow the order the gradients arrived in on
  // rank 0 (those that did not arrive last, in reverse order), given to every rank: a rank
  // whose backward pass gives them in another order still fills the same buckets.
  void adopt_arrival_order() {
    const auto& params = engine_.params();
    std::vector<int64_t> order;
    std::vector<bool> placed(local_.size(), false);
    for (const size_t i : arrival_) {
      if (params.is_frozen(params.group_of(i))) continue;
      order.push_back(static_cast<int64_t>(i));
      placed[i] = true;
    }
    for (size_t i = local_.size(); i-- > 0;) {
      if (!placed[i] && !params.is_frozen(params.group_of(i))) {
        order.push_back(static_cast<int64_t>(i));
      }
    }
    std::vector<at::Tensor> shared{at::tensor(order, at::kLong)};
    owner_.comm_->broadcast(shared);
    const auto* first = shared[0].data_ptr<int64_t>();
    owner_.bucket_order_.assign(first, first + shared[0].numel());
  }

  DataParallel& owner_;
  const UpdateEngine& engine_;
  std::vector<at::Tensor> local_;  // by parameter: the gradients given so far
  std::vector<size_t> arrival_;    // the parameters in the order their gradients came
};

namespace {

// On a parameter's gradient accumulator: during an overlapped step, takes the gradient (the
// accumulator then leaves .grad as it was) and gives it to the step's average.
class TakeGradient final : public torch::autograd::FunctionPreHook {
 public:
  using Target = std::function<bool(size_t, const at::Tensor&)>;
  TakeGradient(Target target, size_t index) : target_(std::move(target)), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& grads) override {
    if (grads.empty() || !grads[0].defined() || !target_(index_, grads[0])) return grads;
    return {at::Tensor()};
  }

 private:
  Target target_;
  size_t index_;
};

}  // namespace

DataParallel::DataParallel(std::shared_ptr<Communicator> comm)
    : comm_(std::move(comm)), hook_target_(std::make_shared<HookTarget>()) {}

DataParallel::~DataParallel() {
  for (auto& [node, hook] : hooks_) {
    auto& hooks = node->pre_hooks();
    hooks.erase(std::remove_if(hooks.begin(), hooks.end(),
                               [&](const auto& held) { return held.get() == hook; }),
                hooks.end());
  }
}

bool DataParallel::arm_hooks(const UpdateEngine& engine) {
  if (hooks_armed_) return hooks_usable_;
  hooks_armed_ = true;
  const auto& params = engine.params();
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& tensor = params.tensor(i);
    const bool frozen = params.is_frozen(params.group_of(i));
    if (frozen && !tensor.requires_grad()) continue;
    if (!tensor.requires_grad() || !tensor.is_leaf()) return false;  // then reduce() serves
  }
  const std::weak_ptr<HookTarget> target = hook_target_;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& tensor = params.tensor(i);
    if (!tensor.requires_grad()) continue;
    auto accumulator = torch::autograd::impl::grad_accumulator(tensor);
    if (!accumulator) continue;
    auto hook = std::make_unique<TakeGradient>(
        [target](size_t index, const at::Tensor& grad) {
          const auto held = target.lock();
          if (!held || !held->current) return false;
          held->current->give(index, grad);
          return true;
        },
        i);
    hooks_.emplace_back(accumulator, hook.get());
    accumulator->add_pre_hook(std::move(hook));
  }
  hooks_usable_ = true;
  return true;
}

std::unique_ptr<OverlappedAverage> DataParallel::begin_overlapped(const UpdateEngine& engine,
                                                                  const StepFlags& flags) {
  if (comm_->size() == 1 || engine.options().accumulate() != 1 || !arm_hooks(engine)) {
    return nullptr;
  }
  const auto& params = engine.params();
  std::vector<at::Tensor> like(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params.is_frozen(params.group_of(i))) like[i] = params.tensor(i);
  }
  std::vector<size_t> order = bucket_order_;
  if (order.empty()) {  // the first step: the backward pass reaches the last layers first
    for (size_t i = params.size(); i-- > 0;) {
      if (like[i].defined()) order.push_back(i);
    }
  }
  comm_->begin_average(like, order, {flags.nonfinite_losses, flags.interrupts},
                       update_agreement(engine));
  return std::make_unique<Average>(*this, engine);
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
