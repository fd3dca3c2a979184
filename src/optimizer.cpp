#include <downhill/callbacks.h>
#include <downhill/dataset.h>
#include <downhill/detail/update_chain.h>
#include <downhill/iteration.h>
#include <downhill/logging.h>
#include <downhill/optimizer.h>
#include <downhill/phase.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <string_view>
#include <unordered_set>

#include "checkpoint.h"
#include "evaluation_cache.h"
#include "hessian_step.h"
#include "interrupt.h"
#include "lbfgs_search.h"
#include "loop_state.h"
#include "rank_group.h"
#include "run_parts.h"
#include "text.h"
#include "update_engine.h"
#include "update_stages.h"
#include "weighted_mean.h"

namespace downhill {

using detail::describe;

namespace {

// The loss must be a scalar floating-point tensor and each monitor a scalar.
void check_evaluation(const Evaluation& evaluation) {
  const auto& loss = evaluation.loss;
  if (evaluation.value && !loss.defined()) {
    if (evaluation.gradients.empty()) {
      throw std::invalid_argument(
          "downhill: the loss was given as a number without its gradients; return "
          "Evaluation::with_gradients(value, gradients), or the loss as a tensor that depends on "
          "the parameters");
    }
  } else if (!loss.defined() || loss.numel() != 1 || !loss.is_floating_point() || loss.is_meta()) {
    throw std::invalid_argument(
        "downhill: the loss must be a scalar floating-point tensor holding a value (not on the "
        "meta device); got " +
        (loss.defined() ? describe(loss) : std::string("an undefined tensor")));
  }
  // Names seen so far: a scan for a few monitors, a set for many (linear in their number).
  std::unordered_set<std::string_view> seen;
  const bool many = evaluation.monitors.size() > Monitors::kScanLimit;
  for (size_t m = 0; m < evaluation.monitors.size(); ++m) {
    const auto& [name, value] = evaluation.monitors[m];
    if (name == "loss") {
      throw std::invalid_argument(
          "downhill: a monitor is named 'loss', the name of the loss itself; give it another "
          "name");
    }
    bool repeated = false;
    if (many) {
      repeated = !seen.insert(name).second;
    } else {
      for (size_t earlier = 0; earlier < m && !repeated; ++earlier) {
        repeated = evaluation.monitors[earlier].first == name;
      }
    }
    if (repeated) {
      throw std::invalid_argument("downhill: two monitors are named '" + name +
                                  "'; monitor names must be unique");
    }
    if (!value.defined() || value.numel() != 1 || value.is_complex() || value.is_meta()) {
      throw std::invalid_argument(
          "downhill: monitor '" + name +
          "' must be a real scalar holding a value (not complex, not on the meta device); got " +
          (value.defined() ? describe(value) : "an undefined tensor"));
    }
  }
}

}  // namespace

// An algorithm written as an Optimizer subclass, seen as a rule: its virtual hooks. Its
// compute_update is the rule of the update chain's tensor form (it has no element form).
class Optimizer::HookRule final : public detail::UpdateRule {
 public:
  explicit HookRule(Optimizer& owner) : owner_(owner) {}
  std::string name() const override { return owner_.name(); }
  std::vector<std::string> state_names() const override { return owner_.state_names(); }
  at::Tensor initial_state(size_t slot, const at::Tensor& param, const Options&) const override {
    return owner_.initial_state(slot, param);
  }
  // The subclass overrides Optimizer::needs_hessian_vector_products() itself.
  bool needs_hessian_vector_products() const override { return false; }
  bool uses_learning_rate() const override { return true; }
  bool forces_nesterov() const override { return false; }
  // The subclass's begin_update, once per update, though the engine prepares each group
  // (and again when an update that was skipped is tried anew).
  void prepare(const detail::UpdateContext& context, at::ScalarType,
               detail::RuleConstants&) const override {
    if (context.update == last_update_) return;
    last_update_ = context.update;
    owner_.begin_update();
  }
  void update(const detail::UpdateContext&, detail::RuleConstants&,
              const detail::ParamTensors& target, const detail::ChainSettings& chain,
              bool) const override {
    detail::compose_update_chain<at::Tensor>(
        detail::RuleStage<at::Tensor, SubclassRule>{{&owner_, target.index, target.slots}}, chain,
        target.param.scalar_type(),
        [&](const auto& chained) { detail::run_reference(chained, target); });
  }

 private:
  // compute_update as a rule body: it keeps its state in the live slots itself.
  struct SubclassRule {
    static constexpr std::array<const char*, 0> state = {};
    Optimizer* owner;
    size_t index;
    std::vector<at::Tensor>* slots;
    at::Tensor operator()(const at::Tensor& g, const at::Tensor& hv,
                          std::array<at::Tensor, 0>&) const {
      return owner->compute_update(index, g, hv, *slots);
    }
  };

  Optimizer& owner_;
  // The subclass's own state: the update whose begin_update has run.
  mutable int64_t last_update_ = 0;
};

Optimizer::Optimizer(std::string name, Loss loss, Params params, Options options)
    : engine_(std::make_unique<detail::UpdateEngine>(std::move(name), std::move(params),
                                                     std::move(options),
                                                     std::make_unique<HookRule>(*this))),
      loop_(std::make_unique<detail::LoopState>()),
      ranks_(detail::RankGroup::join(*engine_)),
      loss_(std::move(loss)),
      points_(std::make_unique<detail::EvaluationCache>()) {}

Optimizer::Optimizer(Loss loss, Params params, Options options,
                     std::unique_ptr<detail::UpdateRule> rule)
    : engine_(std::make_unique<detail::UpdateEngine>(rule->name(), std::move(params),
                                                     std::move(options), std::move(rule))),
      loop_(std::make_unique<detail::LoopState>()),
      ranks_(detail::RankGroup::join(*engine_)),
      loss_(std::move(loss)),
      points_(std::make_unique<detail::EvaluationCache>()) {}

Optimizer::~Optimizer() = default;

const std::string& Optimizer::name() const noexcept { return engine_->name(); }
const Params& Optimizer::params() const noexcept { return engine_->params(); }
std::vector<torch::Tensor> Optimizer::tensors() const { return engine_->params().tensors(); }
const Options& Optimizer::options() const noexcept { return engine_->options(); }
const Options& Optimizer::group_options(size_t group) const {
  return engine_->group_options(group);
}
void Optimizer::change_options(const GroupSettings& change) {
  engine_->change_options(std::nullopt, change);
}
void Optimizer::change_options(size_t group, const GroupSettings& change) {
  engine_->change_options(group, change);
}
int64_t Optimizer::update_count() const noexcept { return engine_->update_count(); }
NamedTensors Optimizer::state() { return engine_->state(); }

void Optimizer::load_state(const NamedTensors& state, int64_t update_count) {
  if (update_count < 0) {
    throw std::invalid_argument("downhill: load_state: the update count is " +
                                std::to_string(update_count) + "; allowed: >= 0");
  }
  const NamedTensors live = engine_->state();
  std::vector<const at::Tensor*> given(live.size(), nullptr);
  for (const auto& [name, tensor] : state) {
    const auto found = std::find_if(live.begin(), live.end(),
                                    [&](const auto& entry) { return entry.first == name; });
    if (found == live.end()) {
      std::string known;
      for (const auto& entry : live) known += (known.empty() ? "" : ", ") + entry.first;
      throw std::invalid_argument("downhill: load_state: " + this->name() +
                                  " has no state tensor '" + name +
                                  "'; it has: " + (known.empty() ? "none" : known));
    }
    const size_t index = static_cast<size_t>(found - live.begin());
    if (given[index]) {
      throw std::invalid_argument("downhill: load_state: '" + name + "' is given twice");
    }
    const at::Tensor& target = found->second;
    if (!tensor.defined() || tensor.sizes() != target.sizes() ||
        tensor.scalar_type() != target.scalar_type()) {
      throw std::invalid_argument("downhill: load_state: '" + name + "' is " +
                                  (tensor.defined() ? detail::describe(tensor) : "undefined") +
                                  "; allowed: " + detail::describe(target));
    }
    given[index] = &tensor;
  }
  for (size_t i = 0; i < live.size(); ++i) {
    if (!given[i]) {
      throw std::invalid_argument("downhill: load_state: '" + live[i].first +
                                  "' is missing; every state tensor must be given");
    }
  }
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < live.size(); ++i) live[i].second.copy_(*given[i]);
  engine_->set_update_count(update_count);
}
std::vector<torch::Tensor>& Optimizer::slots(size_t index) { return engine_->slots(index); }
torch::Tensor& Optimizer::velocity(size_t index) { return engine_->velocity(index); }

Place Optimizer::place() const noexcept { return ranks_->place(); }

bool Optimizer::needs_hessian_vector_products() const {
  return engine_->rule().needs_hessian_vector_products();
}

bool Optimizer::nesterov() const {
  return options().nesterov() || engine_->rule().forces_nesterov();
}

bool Optimizer::forced_nesterov() const {
  // A subclass that overrides nesterov() to true forces it on every group, as NAG does.
  return engine_->rule().forces_nesterov() || (nesterov() && !options().nesterov());
}

torch::Tensor Optimizer::initial_state(size_t /*slot*/, const torch::Tensor& param) const {
  return torch::zeros_like(param, at::MemoryFormat::Contiguous);
}

namespace detail {

namespace {
// What build() returns for a rule: the Optimizer with no subclass hooks of its own.
class RuleOptimizer final : public Optimizer {
 public:
  RuleOptimizer(Loss loss, Params params, Options options, std::unique_ptr<UpdateRule> rule)
      : Optimizer(std::move(loss), std::move(params), std::move(options), std::move(rule)) {}

 protected:
  // The hook of subclass algorithms; the rule's chain runs instead, so it is never called.
  at::Tensor compute_update(size_t, const at::Tensor&, const at::Tensor&,
                            std::vector<at::Tensor>&) override {
    throw std::logic_error("downhill: compute_update() of a rule's optimizer was called");
  }
};
}  // namespace

std::unique_ptr<Optimizer> make_rule_optimizer(Loss loss, Params params, Options options,
                                               std::unique_ptr<UpdateRule> rule) {
  if (!rule) throw std::invalid_argument("downhill: make_rule_optimizer needs a rule");
  return std::make_unique<RuleOptimizer>(std::move(loss), std::move(params), std::move(options),
                                         std::move(rule));
}

}  // namespace detail

bool Optimizer::apply(const std::vector<torch::Tensor>& grads) {
  if (needs_hessian_vector_products()) {
    throw std::invalid_argument(
        "downhill: " + name() +
        " needs Hessian-vector products: call apply(grads, hessian_vector_products), or step()");
  }
  return apply(grads, {});
}

bool Optimizer::apply(const std::vector<torch::Tensor>& grads,
                      const std::vector<torch::Tensor>& hessian_vector_products) {
  if (engine_->rule().searches_line()) {
    throw std::logic_error(
        "downhill: " + name() +
        " cannot apply(grads): its update searches along a line, evaluating the loss at each "
        "point it tries; call step(batch) or run the loop, with a loss that returns your "
        "gradients (Evaluation::with_gradients) if you compute them yourself");
  }
  points_->clear();  // the parameters move
  engine_->check_tensors(grads, "gradient");
  std::vector<torch::Tensor> hvs;
  if (needs_hessian_vector_products()) {
    engine_->check_tensors(hessian_vector_products, "Hessian-vector product");
    hvs = hessian_vector_products;
  }
  // One process has nothing to average: no copy of the list.
  if (ranks_->place().world_size == 1) return engine_->apply(grads, hvs, false, forced_nesterov());
  auto averaged = grads;
  ranks_->average(*engine_, averaged, hvs);
  return engine_->apply(averaged, hvs, false, forced_nesterov());
}

void Optimizer::require_loss(const char* call) const {
  if (!loss_) {
    throw std::logic_error("downhill: " + std::string(call) + " needs a loss; this " + name() +
                           " was built with build(algo, params, options) for apply() only");
  }
}

detail::BatchEvaluation Optimizer::evaluate_batch(const Batch& batch) const {
  ++loop_->counters.loss_evaluations;
  Evaluation evaluation = loss_(batch);
  check_evaluation(evaluation);
  if (!evaluation.gradients.empty()) {
    engine_->check_tensors(evaluation.gradients, "gradient");
    ++loop_->counters.gradient_evaluations;
  }
  Monitors monitors;
  monitors.set("loss", evaluation.value && !evaluation.loss.defined()
                           ? *evaluation.value
                           : evaluation.loss.item<double>());
  for (const auto& [name, value] : evaluation.monitors) monitors.set(name, value.item<double>());
  return {evaluation.loss, std::move(monitors), std::move(evaluation.gradients)};
}

namespace {

// A frozen group's gradient may be left undefined by a loss that computes its own: zeros.
void zero_undefined(const Params& params, std::vector<torch::Tensor>& grads) {
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) grads[i] = torch::zeros_like(params.tensor(i));
  }
}

// What a step agrees on beside its gradients: whether its loss is finite, whether Ctrl-C came.
detail::StepFlags step_flags(double loss) {
  return {std::isfinite(loss) ? 0.0 : 1.0, detail::InterruptGuard::requested() ? 1.0 : 0.0};
}

}  // namespace

detail::BatchEvaluation Optimizer::evaluate_point(const Batch& batch) {
  if (auto kept = points_->take(batch, params())) return std::move(*kept);
  auto evaluation = evaluate_batch(batch);
  if (evaluation.grads.empty()) evaluation.grads = gradients(evaluation.loss, false);
  zero_undefined(params(), evaluation.grads);
  return evaluation;
}

namespace {

// std::invalid_argument unless autograd can give the loss's gradient for every parameter that
// is updated (a frozen group's need not require grad).
void check_differentiable(const Params& params, const torch::Tensor& loss) {
  for (size_t i = 0; i < params.size(); ++i) {
    if (params.tensor(i).requires_grad() || params.is_frozen(params.group_of(i))) continue;
    throw std::invalid_argument(
        "downhill: parameter '" + params.name(i) +
        "' does not require grad; the loss needs its gradient, so create it with "
        "torch::requires_grad() or call requires_grad_(), or return your own gradients from "
        "the loss (Evaluation::with_gradients)");
  }
  if (!loss.requires_grad()) {
    throw std::invalid_argument(
        "downhill: the loss does not depend on any parameter that requires grad");
  }
}

// Zeros for the gradients the loss did not reach (warned about once, in `warned`);
// std::invalid_argument when it reached none.
void zero_unreached(const Params& params, const std::string& optimizer, bool& warned,
                    std::vector<torch::Tensor>& grads) {
  if (std::none_of(grads.begin(), grads.end(), [](const auto& g) { return g.defined(); })) {
    std::string names;
    for (const auto& [name, tensor] : params) names += (names.empty() ? "'" : ", '") + name + "'";
    throw std::invalid_argument(
        "downhill: the loss does not depend on any parameter: it requires grad, but through "
        "other tensors; it must be computed from at least one of " +
        names);
  }
  for (size_t i = 0; i < grads.size(); ++i) {
    if (grads[i].defined()) continue;
    if (!warned && !params.is_frozen(params.group_of(i))) {
      logger()->warn("{}: the loss does not reach parameter '{}'; its gradient is taken as zero",
                     optimizer, params.name(i));
      warned = true;
    }
    grads[i] = torch::zeros_like(params.tensor(i));
  }
}

}  // namespace

std::vector<torch::Tensor> Optimizer::gradients(const torch::Tensor& loss, bool create_graph) {
  ++loop_->counters.gradient_evaluations;
  const auto tensors = params().tensors();
  check_differentiable(params(), loss);
  // A frozen group's parameters need not require grad; those that do not get zeros.
  std::vector<torch::Tensor> inputs;
  std::vector<size_t> input_index;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!tensors[i].requires_grad()) continue;
    inputs.push_back(tensors[i]);
    input_index.push_back(i);
  }
  const auto computed = torch::autograd::grad({loss}, inputs, /*grad_outputs=*/{},
                                              /*retain_graph=*/create_graph, create_graph,
                                              /*allow_unused=*/true);
  std::vector<torch::Tensor> grads(tensors.size());
  for (size_t k = 0; k < computed.size(); ++k) grads[input_index[k]] = computed[k];
  zero_unreached(params(), name(), warned_unused_, grads);
  return grads;
}

Monitors Optimizer::step(const Batch& batch) {
  require_loss("step()");
  if (engine_->rule().searches_line()) return search_step(batch);
  const detail::PhaseScope phase(Phase::kTraining);
  const bool needs_hv = needs_hessian_vector_products();
  if (needs_hv && (options().accumulate() > 1 || options().max_gradient_global_norm() > 0)) {
    throw std::invalid_argument("downhill: " + name() +
                                " computes Hessian-vector products, clipped inside each batch's "
                                "graph; allowed: accumulate(1) and max_gradient_global_norm(0)");
  }
  std::vector<torch::Tensor> grads;
  torch::Tensor loss;
  Monitors monitors;
  if (needs_hv) {  // through autograd's graph, never from a point kept
    points_->clear();
    auto evaluation = evaluate_batch(batch);
    if (!evaluation.grads.empty()) {
      throw std::invalid_argument(
          "downhill: " + name() +
          " needs Hessian-vector products, which downhill takes through autograd's graph of "
          "the loss; a loss that returns its own gradients (Evaluation::with_gradients) cannot "
          "give them: return the loss alone, or call apply(grads, hessian_vector_products)");
    }
    loss = evaluation.loss;
    monitors = std::move(evaluation.monitors);
    grads = gradients(loss, /*create_graph=*/true);
  } else if (auto kept = points_->take(batch, params())) {
    monitors = std::move(kept->monitors);
    grads = std::move(kept->grads);
  } else {
    auto evaluation = evaluate_batch(batch);
    monitors = std::move(evaluation.monitors);
    if (evaluation.grads.empty()) {
      if (ranks_->place().world_size > 1) {
        // Data-parallel, the gradients are averaged while the backward pass computes them.
        check_differentiable(params(), evaluation.loss);
        const double value = monitors.at("loss");
        detail::StepFlags flags = step_flags(value);
        if (auto average = ranks_->begin_overlapped(*engine_, flags)) {
          ++loop_->counters.gradient_evaluations;
          std::vector<torch::Tensor> inputs;
          for (const auto& tensor : tensors()) {
            if (tensor.requires_grad()) inputs.push_back(tensor);
          }
          torch::autograd::backward({evaluation.loss}, /*grad_tensors=*/{},
                                    /*retain_graph=*/false, /*create_graph=*/false, inputs);
          std::vector<torch::Tensor> local, means;
          average->finish(local, means, flags);
          zero_unreached(params(), name(), warned_unused_, local);
          add_gradient_monitors(monitors, local);
          loop_->interrupt_requested = flags.interrupts > 0;
          std::vector<torch::Tensor> no_products;
          if (flags.nonfinite_losses > 0) {
            engine_->skip(ranks_->nonfinite_loss(flags, value));
          } else {
            engine_->apply(means, no_products, /*clipped=*/false, forced_nesterov());
          }
          return monitors;
        }
      }
      evaluation.grads = gradients(evaluation.loss, false);
    }
    zero_undefined(params(), evaluation.grads);
    grads = std::move(evaluation.grads);
  }
  add_gradient_monitors(monitors, grads);
  std::vector<torch::Tensor> hvs;
  // A non-finite loss skips the update; a data-parallel rank still takes part in it.
  if (needs_hv && (std::isfinite(monitors.at("loss")) || ranks_->steps_together())) {
    std::vector<const Options*> clipping;  // each parameter's own group's settings
    for (size_t i = 0; i < grads.size(); ++i) {
      clipping.push_back(&group_options(params().group_of(i)));
    }
    auto clipped =
        detail::clipped_gradients_and_products(grads, tensors(), clipping, options().hv_method());
    grads = std::move(clipped.grads);
    hvs = std::move(clipped.hvs);
  }
  update_from(monitors, grads, hvs);
  return monitors;
}

Monitors Optimizer::search_step(const Batch& batch) {
  const detail::PhaseScope phase(Phase::kTraining);
  // Data-parallel, each point's loss, monitors and gradient are their means over the ranks, so
  // that every rank searches alike (the point kept was agreed on already).
  const auto agreed = [this](detail::BatchEvaluation evaluation) {
    if (ranks_->place().world_size == 1) return evaluation;
    std::vector<torch::Tensor> no_products;
    ranks_->average(*engine_, evaluation.grads, no_products);
    detail::PassProgress totals;
    detail::add_weighted(totals, evaluation.monitors, 1.0);
    ranks_->agree(totals);
    evaluation.monitors = detail::weighted_mean(totals);
    return evaluation;
  };
  auto kept = points_->take(batch, params());
  auto start = kept ? std::move(*kept) : agreed(evaluate_point(batch));
  Monitors monitors = start.monitors;
  add_gradient_monitors(monitors, start.grads);
  if (!lbfgs_) lbfgs_ = std::make_unique<detail::LbfgsWorkspace>();
  auto end = detail::lbfgs_update(*engine_, *lbfgs_, std::move(start), [&] {
    auto evaluation = evaluate_batch(batch);
    if (evaluation.grads.empty()) evaluation.grads = gradients(evaluation.loss, false);
    return agreed(std::move(evaluation));
  });
  points_->store(batch, params(), std::move(end));
  loop_->interrupt_requested =
      ranks_->any(detail::InterruptGuard::requested(), "Ctrl-C was pressed on a rank");
  return monitors;
}

void Optimizer::add_gradient_monitors(Monitors& monitors,
                                      const std::vector<torch::Tensor>& grads) const {
  if (!options().monitor_gradients()) return;
  double global_sum = 0.0;
  for (size_t i = 0; i < grads.size(); ++i) {
    const double sum = detail::sum_of_squares(grads[i].detach());
    // The global norm is the one clipping compares: of the parameters that are updated.
    if (!params().is_frozen(params().group_of(i))) global_sum += sum;
    monitors.set("grad(" + params().name(i) + ")", std::sqrt(sum));
  }
  if (options().max_gradient_global_norm() > 0) monitors.set("grad_norm", std::sqrt(global_sum));
}

void Optimizer::update_from(const Monitors& monitors, std::vector<torch::Tensor>& grads,
                            std::vector<torch::Tensor>& hvs) {
  const double loss = monitors.at("loss");
  const bool clipped = !hvs.empty();  // ESGD's were clipped in the graph
  // The flags count the ranks whose loss was not finite (then every rank skips) or that saw
  // Ctrl-C (then every rank stops after this step).
  detail::StepFlags flags = step_flags(loss);
  const bool update_due = ranks_->reduce(*engine_, grads, hvs, flags);
  loop_->interrupt_requested = flags.interrupts > 0;
  if (flags.nonfinite_losses > 0) {
    engine_->skip(ranks_->nonfinite_loss(flags, loss));
  } else if (update_due) {
    engine_->apply(grads, hvs, clipped, forced_nesterov());
  }
}

Monitors Optimizer::evaluate(Dataset& data) { return evaluate(data, nullptr); }

Monitors Optimizer::evaluate(Dataset& data,
                             const std::function<void(int64_t, const Monitors&)>& after_batch) {
  require_loss("evaluate()");
  if (&data == loop_->point_data && !needs_hessian_vector_products()) {
    return evaluate_point_data(data, after_batch);
  }
  torch::NoGradGuard no_grad;
  const detail::PhaseScope phase(Phase::kValidation);
  detail::PassProgress totals;
  for (int64_t b = 0; !data.pass_over(b); ++b) {
    const Batch batch = data.next();
    const Monitors monitors = evaluate_batch(batch).monitors;
    detail::add_weighted(totals, monitors, static_cast<double>(data.samples(batch)));
    if (after_batch) after_batch(b + 1, monitors);
  }
  ranks_->agree(totals);
  return detail::weighted_mean(totals);
}

Monitors Optimizer::evaluate_point_data(
    Dataset& data, const std::function<void(int64_t, const Monitors&)>& after_batch) {
  // The one batch of everything, at the point the next update starts from: the point kept
  // (L-BFGS's end point), or evaluated now with its gradient, in the training phase, and kept
  // for that update.
  const detail::PhaseScope phase(Phase::kTraining);
  const Batch batch = data.next();
  const detail::BatchEvaluation* point = points_->find(batch, params());
  if (!point) {
    points_->store(batch, params(), evaluate_point(batch));
    point = points_->find(batch, params());
  }
  detail::PassProgress totals;
  detail::add_weighted(totals, point->monitors, static_cast<double>(data.samples(batch)));
  if (after_batch) after_batch(1, point->monitors);
  return detail::weighted_mean(totals);
}

void Optimizer::set_params(const std::vector<torch::Tensor>& values) {
  engine_->check_tensors(values, "value");
  points_->clear();
  engine_->set_params(values);
}

RunSummary Optimizer::last_run() const {
  const auto& counters = loop_->counters;
  RunSummary summary;
  summary.best = counters.best_monitors;
  summary.best_pass = counters.best_pass;
  summary.validations = counters.validations;
  summary.best_validation = counters.best_validation;
  summary.passes = counters.passes;
  summary.updates = update_count();
  summary.loss_evaluations = counters.loss_evaluations;
  summary.gradient_evaluations = counters.gradient_evaluations;
  summary.gradient_norm = engine_->last_gradient_norm();
  summary.stop = counters.stop;
  summary.stop_detail = counters.stop_detail;
  return summary;
}

void Optimizer::restore_best() {
  if (!loop_->best().empty()) set_params(loop_->best());
}

void Optimizer::save_checkpoint(const std::string& path, const Dataset* train,
                                const Dataset* valid) const {
  detail::save_checkpoint(path, *engine_, *loop_, train, valid);
}

void Optimizer::load_checkpoint(const std::string& path) {
  detail::load_checkpoint(path, *engine_, *loop_, nullptr, nullptr);
  points_->clear();
}

void Optimizer::add_callback(std::shared_ptr<Callback> callback) {
  if (!callback) throw std::invalid_argument("downhill: add_callback needs a callback, not null");
  if (std::find(callbacks_.begin(), callbacks_.end(), callback) != callbacks_.end()) {
    throw std::invalid_argument(
        "downhill: add_callback: this callback was added already; a callback runs once per "
        "event");
  }
  callbacks_.push_back(std::move(callback));
}

void Optimizer::remove_callback(const std::shared_ptr<Callback>& callback) {
  const auto found = std::find(callbacks_.begin(), callbacks_.end(), callback);
  if (found == callbacks_.end()) {
    throw std::invalid_argument(
        "downhill: remove_callback: this callback was not added (add_callback)");
  }
  callbacks_.erase(found);
}

Iteration Optimizer::iterate(Dataset& train, Dataset* valid) {
  require_loss("iterate()");
  engine_->set_run_settings(nullptr);  // none left from an Iteration that was never walked
  return Iteration(detail::RunParts{*this, *engine_, *loop_, *ranks_, callbacks_}, train, valid);
}

Iteration Optimizer::iterate(Dataset& train, Dataset* valid, const GroupSettings& settings) {
  if (!settings) return iterate(train, valid);
  auto iteration = iterate(train, valid);
  // Applied when the run starts, after a checkpoint it resumes (whose settings they change).
  engine_->set_run_settings(settings);
  return iteration;
}

namespace {
// Walks `iteration` to its end: the last pair, or the last validation for a run that
// yields no pass (resumed at its end).
std::pair<Monitors, Monitors> run_to_end(Iteration iteration, const detail::LoopState& loop) {
  std::pair<Monitors, Monitors> last;
  for (const auto& item : iteration) last = item;
  if (last.second.empty()) last.second = loop.counters.last_validation;
  return last;
}
}  // namespace

std::pair<Monitors, Monitors> Optimizer::minimize(Dataset& train, Dataset* valid,
                                                  const GroupSettings& settings) {
  return run_to_end(iterate(train, valid, settings), *loop_);
}

std::pair<Monitors, Monitors> Optimizer::minimize(Dataset& train, Dataset* valid) {
  return run_to_end(iterate(train, valid), *loop_);
}

}  // namespace downhill
