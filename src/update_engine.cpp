#include "update_engine.h"

#include <downhill/logging.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>

#include "param_checks.h"
#include "text.h"
#include "update_stages.h"

namespace downhill::detail {

// The checks of param_checks.h, which the engine runs at build.

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

}  // namespace

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
  check_overlaps(params);
}

UpdateEngine::UpdateEngine(std::string name, Params params, Options options,
                           std::unique_ptr<UpdateRule> rule, bool needs_grad)
    : name_(std::move(name)),
      params_(std::move(params)),
      options_(std::move(options)),
      rule_(std::move(rule)) {
  options_.validate();
  check_params(params_, needs_grad);
}

// Lazily, at the first use: an Optimizer subclass's rule hooks are virtual, so they
// cannot be asked while the Optimizer is being built.
void UpdateEngine::ensure_state() {
  if (!state_.empty()) return;
  at::NoGradGuard no_grad;
  const auto names = rule_->state_names();
  state_.resize(params_.size());
  velocity_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto param = params_.tensor(i).detach();
    for (size_t slot = 0; slot < names.size(); ++slot) {
      state_[i].push_back(rule_->initial_state(slot, param, options_).contiguous());
    }
    if (options_.momentum() > 0) {
      velocity_[i] = at::zeros_like(param, at::MemoryFormat::Contiguous);
    }
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

bool UpdateEngine::read_gradients(const std::vector<at::Tensor>& grads,
                                  const std::vector<at::Tensor>& hvs) {
  // One reduction per gradient serves as both the non-finite check and the norm.
  grad_norms_.resize(grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    const double sum = sum_of_squares(grads[i]);
    const bool bad_grad = has_nonfinite(grads[i], sum);
    const bool bad_hv = !bad_grad && !hvs.empty() && has_nonfinite(hvs[i], sum_of_squares(hvs[i]));
    if (bad_grad || bad_hv) {
      skip(std::string("non-finite ") + (bad_grad ? "gradient" : "Hessian-vector product") +
           " for parameter '" + params_.name(i) + "'");
      return false;
    }
    grad_norms_[i] = std::isfinite(sum) ? std::sqrt(sum) : overflow_safe_norm(grads[i]);
  }
  return true;
}

bool UpdateEngine::apply(const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& hvs,
                         bool already_clipped, bool nesterov) {
  if (!read_gradients(grads, hvs)) return false;
  at::NoGradGuard no_grad;
  ensure_state();
  rule_->begin_update(options_, update_count_ + 1);
  ChainSettings chain;
  chain.clip_elem = already_clipped ? 0.0 : options_.max_gradient_elem();
  chain.momentum = options_.momentum();
  chain.nesterov = nesterov;
  const double max_norm =
      already_clipped || chain.clip_elem > 0 ? 0.0 : options_.max_gradient_norm();
  for (size_t i = 0; i < params_.size(); ++i) {
    ParamTensors target;
    target.index = i;
    target.param = params_.tensor(i);
    target.grad = grads[i];
    if (!hvs.empty()) target.hv = hvs[i];
    target.velocity = velocity_[i].defined() ? &velocity_[i] : nullptr;
    target.slots = &state_[i];
    chain.grad_scale = norm_clip_scale(grad_norms_[i], max_norm);
    rule_->update(target, chain, options_.fused());
    // The fused kernels write through raw pointers; tell autograd the tensor changed.
    torch::autograd::impl::bump_version(target.param);
  }
  ++update_count_;
  last_update_applied_ = true;
  return true;
}

void UpdateEngine::skip(const std::string& reason) {
  last_update_applied_ = false;
  last_skip_reason_ = reason;
  logger()->warn("{}: {}; update skipped", name_, reason);
}

void UpdateEngine::set_params(const std::vector<at::Tensor>& values) {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < values.size(); ++i) params_.tensor(i).copy_(values[i]);
}

void UpdateEngine::save(torch::serialize::OutputArchive& archive) {
  ensure_state();
  archive.write("algorithm", c10::IValue(name_));
  archive.write("param_count", c10::IValue(static_cast<int64_t>(params_.size())));
  for (size_t i = 0; i < params_.size(); ++i) {
    archive.write(archive_key("param_name", i), c10::IValue(params_.name(i)));
    archive.write(archive_key("param", i), params_.tensor(i).detach());
    archive.write(archive_key("slot_count", i),
                  c10::IValue(static_cast<int64_t>(state_[i].size())));
    for (size_t s = 0; s < state_[i].size(); ++s) {
      archive.write(archive_key("state", i, s), state_[i][s]);
    }
    if (velocity_[i].defined()) archive.write(archive_key("velocity", i), velocity_[i]);
  }
  archive.write("update_count", c10::IValue(update_count_));
}

EngineSnapshot UpdateEngine::read(torch::serialize::InputArchive& archive,
                                  const Mismatch& mismatch) {
  const auto algorithm = read_value(archive, "algorithm").toStringRef();
  if (algorithm != name_) mismatch("it was written by " + algorithm + ", this is " + name_);
  const auto count = read_value(archive, "param_count").toInt();
  if (count != static_cast<int64_t>(params_.size())) {
    mismatch("it has " + std::to_string(count) + " parameters, this optimizer has " +
             std::to_string(params_.size()));
  }
  ensure_state();
  EngineSnapshot snapshot;
  snapshot.values.resize(params_.size());
  snapshot.state.resize(params_.size());
  snapshot.velocity.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& name = params_.name(i);
    const auto saved_name = read_value(archive, archive_key("param_name", i)).toStringRef();
    if (saved_name != name) {
      mismatch("parameter " + std::to_string(i) + " is named '" + saved_name + "' there, '" + name +
               "' here");
    }
    auto& value = snapshot.values[i];
    value = read_tensor(archive, archive_key("param", i));
    const auto& live = params_.tensor(i);
    if (value.sizes() != live.sizes() || value.scalar_type() != live.scalar_type()) {
      mismatch("parameter '" + name + "' is " + shape_of(value) + " " +
               std::string(c10::toString(value.scalar_type())) + " there, " + shape_of(live) + " " +
               std::string(c10::toString(live.scalar_type())) + " here");
    }
    const auto slots = read_value(archive, archive_key("slot_count", i)).toInt();
    if (slots != static_cast<int64_t>(state_[i].size())) {
      mismatch("parameter '" + name + "' has " + std::to_string(slots) + " state tensors there, " +
               std::to_string(state_[i].size()) + " here");
    }
    for (int64_t s = 0; s < slots; ++s) {
      snapshot.state[i].push_back(read_tensor(archive, archive_key("state", i, s)));
      expect_like(snapshot.state[i].back(), state_[i][s],
                  "state tensor " + std::to_string(s) + " of parameter '" + name + "'", mismatch);
    }
    auto& velocity = snapshot.velocity[i];
    archive.try_read(archive_key("velocity", i), velocity);
    if (velocity.defined() != velocity_[i].defined()) {
      mismatch(std::string("momentum is ") + (velocity.defined() ? "on" : "off") + " there and " +
               (velocity_[i].defined() ? "on" : "off") + " here");
    }
    if (velocity.defined()) {
      expect_like(velocity, velocity_[i], "the velocity of parameter '" + name + "'", mismatch);
    }
  }
  snapshot.update_count = read_value(archive, "update_count").toInt();
  return snapshot;
}

void UpdateEngine::commit(EngineSnapshot&& snapshot) {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    params_.tensor(i).copy_(snapshot.values[i]);
    for (size_t s = 0; s < snapshot.state[i].size(); ++s) state_[i][s].copy_(snapshot.state[i][s]);
    if (velocity_[i].defined()) velocity_[i].copy_(snapshot.velocity[i]);
  }
  update_count_ = snapshot.update_count;
}

}  // namespace downhill::detail
