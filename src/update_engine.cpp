#include "update_engine.h"

#include <downhill/logging.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "group_settings.h"
#include "param_checks.h"
#include "text.h"
#include "update_stages.h"

namespace downhill::detail {

UpdateEngine::UpdateEngine(std::string name, Params params, Options options,
                           std::unique_ptr<UpdateRule> rule)
    : name_(std::move(name)), params_(std::move(params)), rule_(std::move(rule)) {
  options.validate();
  check_params(params_);
  if (rule_->searches_line()) check_searched_params(name_, params_);
  group_options_ = resolve_group_options(params_, options);
  check_rule_settings(group_options_[0]);
  check_degenerate_settings(group_options_);
}

void UpdateEngine::check_degenerate_settings(const std::vector<Options>& options) const {
  for (size_t g = 0; g < options.size(); ++g) {
    if (params_.is_frozen(g)) continue;
    bool seen[2] = {false, false};  // float, double
    for (size_t i = 0; i < params_.size(); ++i) {
      if (params_.group_of(i) != g) continue;
      const auto dtype = params_.tensor(i).scalar_type();
      bool& done = seen[dtype == at::kFloat ? 0 : 1];
      if (done) continue;
      done = true;
      const std::string where = g == 0 ? "" : " (group " + std::to_string(g) + ")";
      auto refuse_infinite = [&](const std::string& setting, double value) {
        if (dtype != at::kFloat || std::isfinite(static_cast<float>(value))) return;
        throw std::invalid_argument(
            "downhill: setting " + setting + where + " is invalid for " + name_ +
            "; it is infinite once rounded to float32, the dtype of parameter '" + params_.name(i) +
            "'; allowed: at most " + format_number(std::numeric_limits<float>::max()) +
            " for float32 parameters");
      };
      // A positive constant that float32 rounds to 0 would make the update do nothing.
      auto refuse_vanishing = [&](const std::string& setting, double value) {
        if (dtype != at::kFloat || value == 0 || static_cast<float>(value) != 0) return;
        throw std::invalid_argument(
            "downhill: setting " + setting + where + " is invalid for " + name_ +
            "; it is 0 once rounded to float32, the dtype of parameter '" + params_.name(i) +
            "', so updates would change nothing; allowed: at least " +
            format_number(std::numeric_limits<float>::denorm_min()) + " for float32 parameters");
      };
      const auto& group = options[g];
      if (rule_->uses_learning_rate()) {
        refuse_infinite("learning_rate = " + format_number(group.learning_rate()),
                        group.learning_rate());
        refuse_vanishing("learning_rate = " + format_number(group.learning_rate()),
                         group.learning_rate());
      }
      // Weight decay's constant: lr·λ (λ without a learning rate).
      const double rate = rule_->uses_learning_rate() ? group.learning_rate() : 1.0;
      const std::string decay = "weight_decay = " + format_number(group.weight_decay()) +
                                " (times the learning rate " + format_number(rate) + ")";
      refuse_infinite(decay, rate * group.weight_decay());
      refuse_vanishing(decay, rate * group.weight_decay());
      try {
        rule_->check_options(group, dtype);
      } catch (const std::invalid_argument& error) {
        if (where.empty()) throw;
        throw std::invalid_argument(error.what() + where);
      }
    }
  }
}

void UpdateEngine::check_rule_settings(const Options& options) const {
  auto refuse = [&](const std::string& setting, const std::string& why) {
    throw std::invalid_argument("downhill: setting " + setting + " is invalid for " + name_ + "; " +
                                why);
  };
  if (rule_->needs_hessian_vector_products()) {
    if (options.accumulate() > 1) {
      refuse("accumulate = " + std::to_string(options.accumulate()),
             "it clips its gradients inside each batch's graph; allowed: 1");
    }
    if (options.max_gradient_global_norm() > 0) {
      refuse("max_gradient_global_norm = " + format_number(options.max_gradient_global_norm()),
             "it clips its gradients inside each batch's graph; allowed: 0, or use "
             "max_gradient_norm");
    }
  }
  if (!rule_->uses_learning_rate() && options.plateau_patience() > 0) {
    refuse("plateau_patience = " + std::to_string(options.plateau_patience()),
           "it has no learning rate to reduce; allowed: 0");
  }
}

const Options& UpdateEngine::group_options(size_t group) const {
  if (group >= group_options_.size()) {
    throw std::out_of_range("downhill: there is no parameter group " + std::to_string(group) +
                            "; this optimizer has " + std::to_string(group_options_.size()));
  }
  return group_options_[group];
}

void UpdateEngine::set_run_settings(const GroupSettings& change) {
  if (change) change_options(std::nullopt, change, /*dry_run=*/true);
  run_settings_ = change;
}

Options UpdateEngine::planned_options() const {
  Options planned = options();
  if (run_settings_) run_settings_(planned);
  return planned;
}

void UpdateEngine::apply_run_settings() {
  if (!run_settings_) return;
  const auto change = std::move(run_settings_);
  run_settings_ = nullptr;
  change_options(std::nullopt, change);
}

void UpdateEngine::change_options(std::optional<size_t> group, const GroupSettings& change,
                                  bool dry_run) {
  if (!change) throw std::invalid_argument("downhill: change_options needs a change; got none");
  auto next = group_options_;
  if (group) {
    group_options(*group);  // throws for a group that does not exist
    const std::string where = " (group " + std::to_string(*group) + ")";
    if (params_.is_frozen(*group)) {
      throw std::invalid_argument("downhill: change_options" + where +
                                  ": the group is frozen; its parameters never change");
    }
    change(next[*group]);
    check_live_change(group_options_[*group], next[*group], where, name_);
    check_same_loop_settings(group_options_[*group], next[*group], *group);
  } else {
    for (size_t g = 0; g < next.size(); ++g) {
      change(next[g]);
      check_live_change(group_options_[g], next[g],
                        g == 0 ? "" : " (group " + std::to_string(g) + ")", name_);
      if (g > 0) check_same_loop_settings(next[0], next[g], g);
    }
  }
  check_rule_settings(next[0]);
  check_degenerate_settings(next);
  window_.check_size_change(options().accumulate(), next[0].accumulate());
  if (!dry_run) assign_group_options(std::move(next));
}

void UpdateEngine::assign_group_options(std::vector<Options>&& options) {
  // Element by element: options() hands out references, which must stay valid.
  for (size_t g = 0; g < group_options_.size(); ++g) group_options_[g] = std::move(options[g]);
}

UpdateEngine::Reduction UpdateEngine::reduce_learning_rate(double factor, double floor) {
  Reduction result;
  for (size_t g = 0; g < group_options_.size(); ++g) {
    if (params_.is_frozen(g)) continue;
    const double rate = group_options_[g].learning_rate();
    const double reduced = std::max(rate * factor, floor);
    if (!(reduced < rate)) continue;
    // Whether group g may have `candidate` as its rate: what build and change_options accept.
    auto trial = group_options_;
    auto accepts = [&](double candidate) {
      trial[g].learning_rate(candidate);
      try {
        trial[g].validate();
        check_degenerate_settings(trial);
        return true;
      } catch (const std::invalid_argument&) {
        return false;
      }
    };
    double next = reduced;
    if (!accepts(reduced)) {
      // The smallest accepted rate in (reduced, rate]: positive doubles order as their bits.
      uint64_t low = std::bit_cast<uint64_t>(std::max(reduced, 0.0));  // refused
      uint64_t high = std::bit_cast<uint64_t>(rate);                   // accepted
      while (high - low > 1) {
        const uint64_t middle = low + (high - low) / 2;
        (accepts(std::bit_cast<double>(middle)) ? high : low) = middle;
      }
      next = std::bit_cast<double>(high);
      result.at_smallest = true;
    }
    if (next < rate) {
      group_options_[g].learning_rate(next);
      result.changed = true;
    }
  }
  return result;
}

// Lazily, at the first use: an Optimizer subclass's rule hooks are virtual, so they
// cannot be asked while the Optimizer is being built.
void UpdateEngine::ensure_state() {
  if (!state_.empty()) return;
  at::NoGradGuard no_grad;
  const auto names = rule_->state_names();
  check_state_names(name_, names);  // an Optimizer subclass's are first seen here
  state_.resize(params_.size());
  velocity_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto param = params_.tensor(i).detach();
    const auto& options = group_options_[params_.group_of(i)];
    for (size_t slot = 0; slot < names.size(); ++slot) {
      state_[i].push_back(rule_->initial_state(slot, param, options).contiguous());
    }
    if (options.momentum() > 0) {
      velocity_[i] = at::zeros_like(param, at::MemoryFormat::Contiguous);
    }
  }
  guard_.reset(params_.size(), names.size());
  rule_constants_.clear();
  group_dtypes_.assign(params_.group_count(), {false, false});
  for (size_t g = 0; g < params_.group_count(); ++g)
    rule_constants_.push_back(rule_->make_constants());
  for (size_t i = 0; i < params_.size(); ++i) {
    group_dtypes_[params_.group_of(i)][params_.tensor(i).scalar_type() == at::kFloat ? 0 : 1] =
        true;
  }
}

NamedTensors UpdateEngine::state() {
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

std::vector<at::Tensor>& UpdateEngine::slots(size_t index) {
  ensure_state();
  return state_.at(index);
}

at::Tensor& UpdateEngine::velocity(size_t index) {
  ensure_state();
  return velocity_.at(index);
}

void UpdateEngine::check_tensors(const std::vector<at::Tensor>& tensors, const char* what) const {
  if (tensors.size() != params_.size()) {
    throw std::invalid_argument("downhill: " + name_ + " got " + std::to_string(tensors.size()) +
                                " " + what + "s for " + std::to_string(params_.size()) +
                                " parameters; give one per parameter, in the order of params()");
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& g = tensors[i];
    const auto& p = params_.tensor(i);
    if (!g.defined() && params_.is_frozen(params_.group_of(i))) continue;
    if (!g.defined()) {
      throw std::invalid_argument("downhill: the " + std::string(what) + " for parameter '" +
                                  params_.name(i) + "' is undefined");
    }
    if (g.layout() != at::kStrided) {
      std::ostringstream layout;
      layout << g.layout();
      throw std::invalid_argument("downhill: the " + std::string(what) + " for parameter '" +
                                  params_.name(i) + "' has layout " + layout.str() +
                                  "; it must be a dense (strided) tensor, as the parameter is "
                                  "(to_dense() turns a sparse one into it)");
    }
    if (g.sizes() != p.sizes() || g.scalar_type() != p.scalar_type() || g.device() != p.device()) {
      throw std::invalid_argument("downhill: the " + std::string(what) + " for parameter '" +
                                  params_.name(i) + "' is " + describe(g) +
                                  "; it must match the parameter: " + describe(p));
    }
  }
}

bool UpdateEngine::read_gradients(const std::vector<at::Tensor>& grads,
                                  const std::vector<at::Tensor>& hvs) {
  // One reduction per gradient serves as both the non-finite check and the norm.
  grad_norms_.assign(grads.size(), 0.0);
  hv_norms_.assign(grads.size(), 0.0);
  for (size_t i = 0; i < grads.size(); ++i) {
    if (params_.is_frozen(params_.group_of(i))) continue;
    const double sum = sum_of_squares(grads[i]);
    const bool bad_grad = has_nonfinite(grads[i], sum);
    const double hv_sum = hvs.empty() || bad_grad ? 0.0 : sum_of_squares(hvs[i]);
    const bool bad_hv = !bad_grad && !hvs.empty() && has_nonfinite(hvs[i], hv_sum);
    if (bad_grad || bad_hv) {
      skip(std::string("non-finite ") + (bad_grad ? "gradient" : "Hessian-vector product") +
           " for parameter '" + params_.name(i) + "'");
      return false;
    }
    grad_norms_[i] = std::isfinite(sum) ? std::sqrt(sum) : overflow_safe_norm(grads[i]);
    if (!hvs.empty()) {
      hv_norms_[i] = std::isfinite(hv_sum) ? std::sqrt(hv_sum) : overflow_safe_norm(hvs[i]);
    }
  }
  return true;
}

double UpdateEngine::schedule_factor(size_t group) const {
  const auto& schedule = group_options_[group].learning_rate_schedule();
  if (!schedule) return 1.0;
  const double factor = schedule(update_count_);
  if (!(factor >= 0) || std::isinf(factor)) {
    throw std::invalid_argument(
        "downhill: learning_rate_schedule(" + std::to_string(update_count_) +
        ") = " + format_number(factor) +
        (group > 0 ? " for parameter group " + std::to_string(group) : std::string()) +
        "; allowed: a finite number >= 0 (no update was applied)");
  }
  return factor;
}

void UpdateEngine::check_scheduled_constants(size_t group) const {
  const auto& options = group_options_[group];
  if (params_.is_frozen(group) || !options.learning_rate_schedule() || !group_dtypes_[group][0]) {
    return;  // only float32 constants can overflow from finite double products
  }
  const double factor = schedule_factors_[group];
  const double rate = rule_->uses_learning_rate() ? options.learning_rate() : 1.0;
  // The products the update's constants are rounded from, each once: lr·f(t) (in the rule's
  // learning rate) and lr·f(t)·λ (the decay).
  auto refuse_infinite = [&](const std::string& constant, double value) {
    if (std::isfinite(static_cast<float>(value))) return;
    throw std::invalid_argument(
        "downhill: learning_rate_schedule(" + std::to_string(update_count_) +
        ") = " + format_number(factor) +
        (group > 0 ? " for parameter group " + std::to_string(group) : std::string()) + " makes " +
        constant + " = " + format_number(value) +
        ", which is infinite in float32, the dtype of the group's parameters; allowed: a "
        "factor that keeps it at most " +
        format_number(std::numeric_limits<float>::max()) + " (no update was applied)");
  };
  if (rule_->schedule_in_learning_rate()) {
    refuse_infinite("the learning rate " + format_number(options.learning_rate()) + " × f(t)",
                    options.learning_rate() * factor);
  }
  if (options.weight_decay() > 0) {
    refuse_infinite("the decay lr·f(t)·weight_decay", rate * factor * options.weight_decay());
  }
}

void UpdateEngine::compute_clip_scales(const std::vector<at::Tensor>& grads, bool already_clipped) {
  clip_scales_.assign(params_.size(), 1.0);
  double global_sum = 0.0;  // Σ‖clipped g‖² over every parameter
  for (size_t i = 0; i < params_.size(); ++i) {
    const size_t group = params_.group_of(i);
    if (params_.is_frozen(group)) continue;
    const auto& options = group_options_[group];
    const double clip_elem = already_clipped ? 0.0 : options.max_gradient_elem();
    if (clip_elem > 0) {
      // The norm after clamping is not the pre-read's; only needed for the global norm.
      if (options.max_gradient_global_norm() > 0) {
        global_sum += sum_of_squares(grads[i].detach().clamp(-clip_elem, clip_elem));
      }
      continue;
    }
    const double max_norm = already_clipped ? 0.0 : options.max_gradient_norm();
    clip_scales_[i] = norm_clip_scale(grad_norms_[i], max_norm);
    const double clipped = grad_norms_[i] * clip_scales_[i];
    global_sum += clipped * clipped;
  }
  const double global_scale =
      norm_clip_scale(std::sqrt(global_sum), options().max_gradient_global_norm());
  if (global_scale == 1.0) return;
  for (auto& scale : clip_scales_) scale *= global_scale;
}

void UpdateEngine::prepare_rule_constants() {
  for (size_t g = 0; g < params_.group_count(); ++g) {
    if (params_.is_frozen(g)) continue;
    const auto context = update_context(g);
    if (group_dtypes_[g][0]) rule_->prepare(context, at::kFloat, *rule_constants_[g]);
    if (group_dtypes_[g][1]) rule_->prepare(context, at::kDouble, *rule_constants_[g]);
  }
}

UpdateContext UpdateEngine::update_context(size_t group) const {
  const double factor = rule_->schedule_in_learning_rate() ? schedule_factors_[group] : 1.0;
  return UpdateContext{group_options_[group], update_count_ + 1, factor};
}

template <typename Visit>
bool UpdateEngine::for_each_update(bool already_clipped, bool nesterov, Visit&& visit) {
  size_t group = params_.group_count();  // none yet
  ChainSettings chain;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_.is_frozen(params_.group_of(i))) continue;
    if (params_.group_of(i) != group) {
      group = params_.group_of(i);
      const auto& options = group_options_[group];
      chain.clip_elem = already_clipped ? 0.0 : options.max_gradient_elem();
      chain.momentum = options.momentum();
      chain.nesterov = nesterov || options.nesterov();
      chain.update_scale = rule_->schedule_in_learning_rate() ? 1.0 : schedule_factors_[group];
      const double rate = rule_->uses_learning_rate() ? options.learning_rate() : 1.0;
      chain.decay = rate * schedule_factors_[group] * options.weight_decay();
    }
    chain.grad_scale = clip_scales_[i];
    if (!visit(i, chain, group)) return false;
  }
  return true;
}

ParamTensors UpdateEngine::live_target(size_t index, const std::vector<at::Tensor>& grads,
                                       const std::vector<at::Tensor>& hvs) {
  ParamTensors target;
  target.index = index;
  target.param = params_.tensor(index);
  target.grad = grads[index];
  if (!hvs.empty()) target.hv = hvs[index];
  target.velocity = velocity_[index].defined() ? &velocity_[index] : nullptr;
  target.slots = &state_[index];
  return target;
}

bool UpdateEngine::apply(const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& hvs,
                         bool already_clipped, bool nesterov) {
  if (!read_gradients(grads, hvs)) return false;
  at::NoGradGuard no_grad;
  ensure_state();
  // Every check that can throw comes before the first parameter changes.
  schedule_factors_.resize(group_options_.size());
  for (size_t g = 0; g < schedule_factors_.size(); ++g) {
    schedule_factors_[g] = schedule_factor(g);
    check_scheduled_constants(g);
  }
  compute_clip_scales(grads, already_clipped);
  prepare_rule_constants();
  // The guard judges every parameter before any changes: by the ranges of its inputs when
  // they prove the update finite (then it runs in place, in one pass), otherwise by running
  // it on copies and reading what it would write. Then it commits them all.
  const bool judged = for_each_update(
      already_clipped, nesterov, [&](size_t i, const ChainSettings& chain, size_t group) {
        const auto context = update_context(group);
        const GuardedUpdate update{*rule_, context, *rule_constants_[group], chain,
                                   group_options_[group].fused()};
        const Range grad{-grad_norms_[i], grad_norms_[i]};
        const Range hv{-hv_norms_[i], hv_norms_[i]};
        if (guard_.judge(update, live_target(i, grads, hvs), grad, hv, params_.name(i))) {
          return true;
        }
        skip(guard_.failure());
        return false;
      });
  if (!judged) return false;
  measure_before_commit(grads);
  for_each_update(already_clipped, nesterov,
                  [&](size_t i, const ChainSettings& chain, size_t group) {
                    const auto context = update_context(group);
                    const GuardedUpdate update{*rule_, context, *rule_constants_[group], chain,
                                               group_options_[group].fused()};
                    guard_.commit(update, live_target(i, grads, hvs));
                    return true;
                  });
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_.is_frozen(params_.group_of(i))) continue;
    guard_.record(i, params_.tensor(i), velocity_[i], state_[i]);
  }
  measure_step();
  // Of the norms read_gradients() found, not recomputed; hypot cannot overflow.
  last_gradient_norm_ = 0.0;
  for (const double norm : grad_norms_) last_gradient_norm_ = std::hypot(last_gradient_norm_, norm);
  ++update_count_;
  last_update_applied_ = true;
  return true;
}

namespace {
// max |x|, one reduction without a temporary of |x|.
double largest_magnitude(const at::Tensor& x) {
  return at::linalg_vector_norm(x, std::numeric_limits<double>::infinity()).item<double>();
}
}  // namespace

void UpdateEngine::measure_before_commit(const std::vector<at::Tensor>& grads) {
  last_gradient_max_ = 0.0;
  last_step_max_ = 0.0;
  const bool gradient = options().gradient_tolerance() > 0;
  const bool step = options().step_tolerance() > 0;
  if (!gradient && !step) return;
  params_before_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_.is_frozen(params_.group_of(i))) continue;
    if (gradient && grads[i].numel() > 0) {
      last_gradient_max_ = std::max(last_gradient_max_, largest_magnitude(grads[i]));
    }
    if (!step) continue;
    auto& before = params_before_[i];
    const auto& param = params_.tensor(i);
    if (before.defined() && before.sizes() == param.sizes() && before.dtype() == param.dtype()) {
      before.copy_(param);
    } else {
      before = param.detach().clone();
    }
  }
}

void UpdateEngine::measure_step() {
  if (options().step_tolerance() <= 0) return;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_.is_frozen(params_.group_of(i)) || params_.tensor(i).numel() == 0) continue;
    // The kept copy becomes the difference: it is overwritten at the next update anyway.
    auto& before = params_before_[i];
    last_step_max_ = std::max(last_step_max_, largest_magnitude(before.sub_(params_.tensor(i))));
  }
}

bool UpdateEngine::add_to_window(std::vector<at::Tensor>& grads) {
  if (options().accumulate() == 1) return true;
  last_update_applied_ = true;
  return window_.add(grads, options().accumulate());
}

void UpdateEngine::record_searched_update(const SearchedUpdate& update) {
  ++update_count_;
  last_update_applied_ = true;
  last_gradient_max_ = update.gradient_max;
  last_step_max_ = update.step_max;
  last_gradient_norm_ = update.gradient_norm;
  last_searched_losses_ = std::pair(update.loss_before, update.loss_after);
}

void UpdateEngine::skip(const std::string& reason) {
  window_.clear();
  last_update_applied_ = false;
  last_skip_reason_ = reason;
  logger()->warn("{}: {}; update skipped", name_, reason);
}

void UpdateEngine::set_params(const std::vector<at::Tensor>& values) {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < values.size(); ++i) params_.tensor(i).copy_(values[i]);
}

}  // namespace downhill::detail
