#include <downhill/dataset.h>
#include <downhill/hessian.h>
#include <downhill/logging.h>
#include <downhill/optimizer.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <unordered_set>

#include "text.h"
#include "update_stages.h"
#include "weighted_mean.h"

namespace downhill {

using detail::describe;
using detail::shape_of;

namespace {

// Whether two tensors on one storage share an element. Only called for tensors whose
// byte ranges intersect; strided views can interleave without sharing, so those are
// checked element by element on a map of the shared range.
bool share_elements(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.is_contiguous() && b.is_contiguous()) return true;
  if (a.element_size() != b.element_size()) return true;  // views of another dtype: assume so
  torch::NoGradGuard no_grad;
  auto last = [](const torch::Tensor& t) {
    int64_t offset = t.storage_offset();
    for (int64_t d = 0; d < t.dim(); ++d) offset += (t.size(d) - 1) * t.stride(d);
    return offset;
  };
  const int64_t first = std::min(a.storage_offset(), b.storage_offset());
  const int64_t extent = std::max(last(a), last(b)) - first + 1;
  auto marks = torch::zeros({extent}, torch::kInt8);
  marks.as_strided(a.sizes(), a.strides(), a.storage_offset() - first).fill_(1);
  return marks.as_strided(b.sizes(), b.strides(), b.storage_offset() - first).any().item<bool>();
}

// The [first, last] bytes of `t` within its storage (t has at least one element).
std::pair<int64_t, int64_t> byte_range(const torch::Tensor& t) {
  int64_t last = t.storage_offset();
  for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
  const int64_t size = static_cast<int64_t>(t.element_size());
  return {t.storage_offset() * size, (last + 1) * size - 1};
}

// Parameters that share memory would be updated twice in one step.
void check_overlaps(const Params& params) {
  for (size_t j = 1; j < params.size(); ++j) {
    const auto& b = params.tensor(j);
    for (size_t i = 0; i < j; ++i) {
      const auto& a = params.tensor(i);
      if (a.numel() == 0 || b.numel() == 0 || !a.has_storage() || !b.has_storage() ||
          a.storage().unsafeGetStorageImpl() != b.storage().unsafeGetStorageImpl()) {
        continue;
      }
      const auto [a_first, a_last] = byte_range(a);
      const auto [b_first, b_last] = byte_range(b);
      if (a_last < b_first || b_last < a_first || !share_elements(a, b)) continue;
      throw std::invalid_argument("downhill: parameters '" + params.name(i) + "' and '" +
                                  params.name(j) +
                                  "' overlap in memory (views sharing elements of one tensor); "
                                  "each element may belong to one parameter only");
    }
  }
}

void check_params(const Params& params, bool needs_grad) {
  if (params.empty()) {
    throw std::invalid_argument(
        "downhill: no parameters to optimize; pass at least one tensor in Params");
  }
  std::unordered_set<const void*> seen_tensors;
  std::unordered_set<std::string> seen_names;
  for (const auto& [name, tensor] : params) {
    if (!tensor.defined()) {
      throw std::invalid_argument("downhill: parameter '" + name + "' is an undefined tensor");
    }
    if (tensor.layout() != torch::kStrided) {
      throw std::invalid_argument("downhill: parameter '" + name + "' is a sparse tensor (" +
                                  describe(tensor) +
                                  "); allowed: a dense (strided) tensor; call to_dense()");
    }
    if (tensor.is_meta()) {
      throw std::invalid_argument("downhill: parameter '" + name +
                                  "' is on the meta device, which holds no values; allowed: a "
                                  "tensor with storage (cpu, ...)");
    }
    const auto dtype = tensor.scalar_type();
    if (dtype != torch::kFloat && dtype != torch::kDouble) {
      throw std::invalid_argument(
          "downhill: parameter '" + name + "' has dtype " + std::string(c10::toString(dtype)) +
          "; allowed: Float (float32) or Double (float64); convert it first, for example "
          "with to(torch::kFloat)");
    }
    if (!seen_names.insert(name).second) {
      throw std::invalid_argument("downhill: two parameters are named '" + name +
                                  "'; names must be unique");
    }
    if (!seen_tensors.insert(tensor.unsafeGetTensorImpl()).second) {
      throw std::invalid_argument("downhill: parameter '" + name +
                                  "' is the same tensor as an earlier parameter; each "
                                  "tensor may appear once");
    }
    if (needs_grad && !tensor.requires_grad()) {
      throw std::invalid_argument("downhill: parameter '" + name +
                                  "' does not require grad; the loss needs its gradient, so "
                                  "create it with torch::requires_grad() or call "
                                  "requires_grad_()");
    }
  }
}

// Whether `t` holds a NaN or an infinity, given its sum of squares: that sum is
// also infinite when the squares of huge but finite elements overflow.
bool has_nonfinite(const torch::Tensor& t, double sum_of_squares) {
  if (std::isfinite(sum_of_squares)) return false;
  if (std::isnan(sum_of_squares)) return true;
  torch::NoGradGuard no_grad;
  return !torch::isfinite(t).all().item<bool>();
}

// The L2 norm of a finite `t` whose sum of squares overflowed: scaled by its largest element.
double overflow_safe_norm(const torch::Tensor& t) {
  torch::NoGradGuard no_grad;
  const double largest = t.abs().max().item<double>();
  return largest * std::sqrt(detail::sum_of_squares((t / largest).contiguous()));
}

// The loss must be a scalar floating-point tensor and each monitor a scalar.
void check_evaluation(const Evaluation& evaluation) {
  const auto& loss = evaluation.loss;
  if (!loss.defined() || loss.numel() != 1 || !loss.is_floating_point()) {
    throw std::invalid_argument(
        "downhill: the loss must be a scalar floating-point tensor; got " +
        (loss.defined() ? describe(loss) : std::string("an undefined tensor")));
  }
  for (size_t m = 0; m < evaluation.monitors.size(); ++m) {
    const auto& [name, value] = evaluation.monitors[m];
    if (name == "loss") {
      throw std::invalid_argument(
          "downhill: a monitor is named 'loss', the name of the loss itself; give it another "
          "name");
    }
    for (size_t earlier = 0; earlier < m; ++earlier) {
      if (evaluation.monitors[earlier].first == name) {
        throw std::invalid_argument("downhill: two monitors are named '" + name +
                                    "'; monitor names must be unique");
      }
    }
    if (!value.defined() || value.numel() != 1) {
      throw std::invalid_argument("downhill: monitor '" + name + "' must be a scalar; got " +
                                  (value.defined() ? describe(value) : "an undefined tensor"));
    }
  }
}

}  // namespace

// An algorithm written as an Optimizer subclass, seen as a rule: its virtual hooks.
class Optimizer::HookRule final : public detail::UpdateRule {
 public:
  explicit HookRule(Optimizer& owner) : owner_(owner) {}
  std::string name() const override { return owner_.name_; }
  std::vector<std::string> state_names() const override { return owner_.state_names(); }
  at::Tensor initial_state(size_t slot, const at::Tensor& param, const Options&) const override {
    return owner_.initial_state(slot, param);
  }
  // The subclass overrides Optimizer::needs_hessian_vector_products() itself.
  bool needs_hessian_vector_products() const override { return false; }
  bool forces_nesterov() const override { return false; }
  void begin_update(const Options&, int64_t) override { owner_.begin_update(); }
  void update(const detail::ParamTensors& target, const detail::ChainSettings& chain,
              bool fused) override {
    if (fused && owner_.fused_update(target.index, target.grad, target.hv, chain.grad_scale,
                                     chain.clip_elem)) {
      return;
    }
    const auto clipped = detail::clip_reference(target.grad, chain.grad_scale, chain.clip_elem);
    const auto update = owner_.compute_update(target.index, clipped, target.hv, *target.slots);
    auto param = target.param;
    torch::Tensor none;
    detail::momentum_reference(param, target.velocity ? *target.velocity : none, update,
                               chain.momentum, chain.nesterov);
  }

 private:
  Optimizer& owner_;
};

Optimizer::Optimizer(std::string name, Loss loss, Params params, Options options)
    : name_(std::move(name)),
      rule_(std::make_unique<HookRule>(*this)),
      loss_(std::move(loss)),
      params_(std::move(params)),
      options_(std::move(options)) {
  options_.validate();
  check_params(params_, static_cast<bool>(loss_));
  check_overlaps(params_);
}

Optimizer::Optimizer(Loss loss, Params params, Options options,
                     std::unique_ptr<detail::UpdateRule> rule)
    : name_(rule->name()),
      rule_(std::move(rule)),
      loss_(std::move(loss)),
      params_(std::move(params)),
      options_(std::move(options)) {
  options_.validate();
  check_params(params_, static_cast<bool>(loss_));
  check_overlaps(params_);
}

Optimizer::~Optimizer() = default;

bool Optimizer::needs_hessian_vector_products() const {
  return rule_->needs_hessian_vector_products();
}

bool Optimizer::nesterov() const { return options_.nesterov() || rule_->forces_nesterov(); }

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

void Optimizer::ensure_state() {
  if (!state_.empty()) return;
  torch::NoGradGuard no_grad;
  const auto names = rule_->state_names();
  state_.resize(params_.size());
  velocity_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto param = params_.tensor(i).detach();
    for (size_t slot = 0; slot < names.size(); ++slot) {
      state_[i].push_back(rule_->initial_state(slot, param, options_).contiguous());
    }
    if (options_.momentum() > 0) {
      velocity_[i] = torch::zeros_like(param, at::MemoryFormat::Contiguous);
    }
  }
}

NamedTensors Optimizer::state() {
  ensure_state();
  NamedTensors out;
  const auto names = rule_->state_names();
  for (size_t i = 0; i < params_.size(); ++i) {
    for (size_t slot = 0; slot < names.size(); ++slot) {
      out.emplace_back(params_.name(i) + "." + names[slot], state_[i][slot]);
    }
    if (velocity_[i].defined()) out.emplace_back(params_.name(i) + ".velocity", velocity_[i]);
  }
  return out;
}

void Optimizer::check_gradients(const std::vector<torch::Tensor>& grads, const char* what) const {
  if (grads.size() != params_.size()) {
    throw std::invalid_argument("downhill: " + name_ + " got " + std::to_string(grads.size()) +
                                " " + what + "s for " + std::to_string(params_.size()) +
                                " parameters; give one per parameter, in the order of params()");
  }
  for (size_t i = 0; i < grads.size(); ++i) {
    const auto& g = grads[i];
    const auto& p = params_.tensor(i);
    if (!g.defined()) {
      throw std::invalid_argument("downhill: the " + std::string(what) + " for parameter '" +
                                  params_.name(i) + "' is undefined");
    }
    if (g.sizes() != p.sizes() || g.scalar_type() != p.scalar_type() || g.device() != p.device()) {
      throw std::invalid_argument("downhill: the " + std::string(what) + " for parameter '" +
                                  params_.name(i) + "' is " + describe(g) +
                                  "; it must match the parameter: " + describe(p));
    }
  }
}

bool Optimizer::apply(const std::vector<torch::Tensor>& grads) {
  if (needs_hessian_vector_products()) {
    throw std::invalid_argument(
        "downhill: " + name_ +
        " needs Hessian-vector products: call apply(grads, hessian_vector_products), or step()");
  }
  check_gradients(grads, "gradient");
  return apply_checked(grads, {}, false);
}

bool Optimizer::apply(const std::vector<torch::Tensor>& grads,
                      const std::vector<torch::Tensor>& hessian_vector_products) {
  check_gradients(grads, "gradient");
  if (!needs_hessian_vector_products()) return apply_checked(grads, {}, false);
  check_gradients(hessian_vector_products, "Hessian-vector product");
  return apply_checked(grads, hessian_vector_products, false);
}

bool Optimizer::apply_checked(const std::vector<torch::Tensor>& grads,
                              const std::vector<torch::Tensor>& hvs, bool already_clipped) {
  // One reduction per gradient serves as both the non-finite check and the norm.
  auto& norms = grad_norms_;  // a member, so that a step allocates nothing
  norms.resize(grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    const double sum = detail::sum_of_squares(grads[i]);
    const bool bad_grad = has_nonfinite(grads[i], sum);
    const bool bad_hv =
        !bad_grad && !hvs.empty() && has_nonfinite(hvs[i], detail::sum_of_squares(hvs[i]));
    if (bad_grad || bad_hv) {
      skip_update(std::string("non-finite ") + (bad_grad ? "gradient" : "Hessian-vector product") +
                  " for parameter '" + params_.name(i) + "'");
      return false;
    }
    norms[i] = std::isfinite(sum) ? std::sqrt(sum) : overflow_safe_norm(grads[i]);
  }

  torch::NoGradGuard no_grad;
  ensure_state();
  rule_->begin_update(options_, update_count_ + 1);
  detail::ChainSettings chain;
  chain.clip_elem = already_clipped ? 0.0 : options_.max_gradient_elem();
  chain.momentum = options_.momentum();
  chain.nesterov = nesterov();
  const double max_norm =
      already_clipped || chain.clip_elem > 0 ? 0.0 : options_.max_gradient_norm();
  for (size_t i = 0; i < params_.size(); ++i) {
    detail::ParamTensors target;
    target.index = i;
    target.param = params_.tensor(i);
    target.grad = grads[i];
    if (!hvs.empty()) target.hv = hvs[i];
    target.velocity = velocity_[i].defined() ? &velocity_[i] : nullptr;
    target.slots = &state_[i];
    chain.grad_scale = detail::norm_clip_scale(norms[i], max_norm);
    rule_->update(target, chain, options_.fused());
    // The fused kernels write through raw pointers; tell autograd the tensor changed.
    torch::autograd::impl::bump_version(target.param);
  }
  ++update_count_;
  last_update_applied_ = true;
  return true;
}

void Optimizer::skip_update(const std::string& reason) {
  last_update_applied_ = false;
  last_skip_reason_ = reason;
  logger()->warn("{}: {}; update skipped", name_, reason);
}

Monitors Optimizer::step(const Batch& batch) {
  if (!loss_) {
    throw std::logic_error("downhill: step() needs a loss; this " + name_ +
                           " was built with build(algo, params, options) for apply() only");
  }
  Evaluation evaluation = loss_(batch);
  check_evaluation(evaluation);
  const auto& loss = evaluation.loss;
  if (!loss.requires_grad()) {
    throw std::invalid_argument(
        "downhill: the loss does not depend on any parameter that requires grad");
  }

  Monitors monitors;
  monitors.set("loss", loss.item<double>());
  for (const auto& [name, value] : evaluation.monitors) monitors.set(name, value.item<double>());

  const bool needs_hv = needs_hessian_vector_products();
  const auto tensors = params_.tensors();
  auto grads = torch::autograd::grad({loss}, tensors, /*grad_outputs=*/{},
                                     /*retain_graph=*/needs_hv, /*create_graph=*/needs_hv,
                                     /*allow_unused=*/true);
  if (std::none_of(grads.begin(), grads.end(), [](const auto& g) { return g.defined(); })) {
    std::string names;
    for (const auto& [name, tensor] : params_) names += (names.empty() ? "'" : ", '") + name + "'";
    throw std::invalid_argument(
        "downhill: the loss does not depend on any parameter: it requires grad, but through "
        "other tensors; it must be computed from at least one of " +
        names);
  }
  for (size_t i = 0; i < grads.size(); ++i) {
    if (grads[i].defined()) continue;
    if (!warned_unused_) {
      logger()->warn("{}: the loss does not reach parameter '{}'; its gradient is taken as zero",
                     name_, params_.name(i));
      warned_unused_ = true;
    }
    grads[i] = torch::zeros_like(tensors[i]);
  }
  if (options_.monitor_gradients()) {
    for (size_t i = 0; i < grads.size(); ++i) {
      monitors.set("grad(" + params_.name(i) + ")",
                   std::sqrt(detail::sum_of_squares(grads[i].detach())));
    }
  }
  if (!std::isfinite(monitors.at("loss"))) {
    skip_update("non-finite loss (" + std::to_string(monitors.at("loss")) + ")");
    return monitors;
  }

  if (!needs_hv) {
    apply_checked(grads, {}, false);
    return monitors;
  }
  // ESGD: clip inside the graph, so that Hv is that of the clipped gradient (as downhill).
  std::vector<torch::Tensor> clipped(grads.size()), probes(grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    const auto& g = grads[i];
    if (options_.max_gradient_elem() > 0) {
      clipped[i] = g.clamp(-options_.max_gradient_elem(), options_.max_gradient_elem());
    } else if (options_.max_gradient_norm() > 0) {
      double norm = std::sqrt(detail::sum_of_squares(g.detach()));
      if (std::isinf(norm)) norm = overflow_safe_norm(g.detach());  // NaN: apply() refuses it
      if (norm > options_.max_gradient_norm()) {
        // In the graph, so that Hv is that of the clipped gradient; scaled by the largest
        // element first, so that the norm cannot overflow (the constant scale does not
        // change its derivative).
        const auto largest = g.detach().abs().max();
        clipped[i] = g * (options_.max_gradient_norm() / (largest * (g / largest).norm()));
      } else {
        clipped[i] = g;
      }
    } else {
      clipped[i] = g;
    }
    probes[i] = torch::randn_like(tensors[i]);
  }
  auto hvs = hessian_vector_products(clipped, tensors, probes, options_.hv_method());
  for (auto& c : clipped) c = c.detach();
  apply_checked(clipped, hvs, true);
  return monitors;
}

Monitors Optimizer::evaluate(Dataset& data) {
  if (!loss_) {
    throw std::logic_error("downhill: evaluate() needs a loss; this " + name_ +
                           " was built for apply() only");
  }
  torch::NoGradGuard no_grad;
  detail::PassProgress totals;
  for (int64_t b = 0; b < data.iteration_size(); ++b) {
    const Batch batch = data.next();
    const Evaluation evaluation = loss_(batch);
    check_evaluation(evaluation);
    Monitors monitors;
    monitors.set("loss", evaluation.loss.item<double>());
    for (const auto& [name, value] : evaluation.monitors) monitors.set(name, value.item<double>());
    detail::add_weighted(totals, monitors, static_cast<double>(data.samples(batch)));
  }
  return detail::weighted_mean(totals);
}

void Optimizer::set_params(const std::vector<torch::Tensor>& values) {
  check_gradients(values, "value");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < values.size(); ++i) params_.tensor(i).copy_(values[i]);
}

void Optimizer::keep_best() {
  torch::NoGradGuard no_grad;
  best_.clear();
  for (const auto& tensor : params_.tensors()) best_.push_back(tensor.detach().clone());
}

void Optimizer::restore_best() {
  if (!best_.empty()) set_params(best_);
}

}  // namespace downhill
