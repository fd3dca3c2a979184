#include "update_guard.h"

#include <downhill/detail/fused_kernel.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace downhill::detail {

namespace {

// A tensor's identity and version: any in-place change through ATen bumps the version.
const void* identity(const at::Tensor& t) { return t.unsafeGetTensorImpl(); }
int64_t version(const at::Tensor& t) {
  return t.unsafeGetTensorImpl()->version_counter().current_version();
}

// The range of a tensor's elements, read once; NaN bounds when one is NaN.
Range observed_range(const at::Tensor& t) {
  if (!t.defined() || t.numel() == 0) return {};
  const auto [low, high] = at::aminmax(t);
  return {low.item<double>(), high.item<double>()};
}

bool is_finite(Range range) { return std::isfinite(range.lo) && std::isfinite(range.hi); }

}  // namespace

void UpdateGuard::reset(size_t param_count, size_t slot_count) {
  known_.assign(param_count, Known{});
  next_ranges_.assign(param_count, StateRanges{});
  for (size_t i = 0; i < param_count; ++i) {
    known_[i].ranges.slots.resize(slot_count);
    next_ranges_[i].slots.resize(slot_count);
  }
  proven_.assign(param_count, 0);
  pending_.assign(param_count, Pending{});
}

void UpdateGuard::refresh_ranges(const ParamTensors& target) {
  auto& known = known_[target.index];
  const auto& param = target.param;
  const at::Tensor no_velocity;
  const auto& velocity = target.velocity ? *target.velocity : no_velocity;
  const auto& slots = *target.slots;
  bool current = known.valid && known.tensors.size() == 2 + slots.size();
  auto check = [&](size_t k, const at::Tensor& t) {
    if (current && t.defined()) {
      current = known.tensors[k] == identity(t) && known.versions[k] == version(t);
    }
  };
  check(0, param);
  check(1, velocity);
  for (size_t s = 0; s < slots.size(); ++s) check(2 + s, slots[s]);
  if (current) return;
  known.ranges.param = observed_range(param);
  known.ranges.velocity = observed_range(velocity);
  for (size_t s = 0; s < slots.size(); ++s) known.ranges.slots[s] = observed_range(slots[s]);
  known.valid = true;  // the versions follow in record()
}

bool UpdateGuard::judge(const GuardedUpdate& update, const ParamTensors& target, Range grad,
                        Range hv, const std::string& param_name) {
  const size_t index = target.index;
  refresh_ranges(target);
  auto& ranges = next_ranges_[index];
  const auto& known = known_[index].ranges;
  ranges.param = known.param;
  ranges.velocity = known.velocity;
  std::copy(known.slots.begin(), known.slots.end(), ranges.slots.begin());
  proven_[index] = update.rule.bound(update.constants, update.chain, target.param.scalar_type(),
                                     grad, hv, ranges);
  if (proven_[index]) return true;
  return dry_run(update, target, param_name);
}

bool UpdateGuard::dry_run(const GuardedUpdate& update, const ParamTensors& live,
                          const std::string& param_name) {
  const bool fused = update.fused && update.rule.updates_only_target() && fused_eligible(live);
  auto& pending = pending_[live.index];
  auto copy = [](const at::Tensor& t) { return t.detach().clone(at::MemoryFormat::Contiguous); };
  pending.param = copy(live.param);
  pending.velocity = live.velocity ? copy(*live.velocity) : at::Tensor();
  pending.slots.clear();
  for (const auto& slot : *live.slots) pending.slots.push_back(copy(slot));
  ParamTensors target = live;
  target.param = pending.param;
  target.velocity = live.velocity ? &pending.velocity : nullptr;
  target.slots = &pending.slots;
  update.rule.update(update.context, update.constants, target, update.chain, fused);
  auto& ranges = next_ranges_[live.index];
  std::string bad;
  ranges.param = observed_range(pending.param);
  if (!is_finite(ranges.param)) bad = "its new value";
  ranges.velocity = observed_range(pending.velocity);
  if (bad.empty() && !is_finite(ranges.velocity)) bad = "its velocity";
  for (size_t s = 0; s < pending.slots.size(); ++s) {
    ranges.slots[s] = observed_range(pending.slots[s]);
    if (bad.empty() && !is_finite(ranges.slots[s])) {
      bad = "its state '" + update.rule.state_names()[s] + "'";
    }
  }
  if (bad.empty()) return true;
  for (auto& p : pending_) p = Pending{};
  failure_ = "the update of parameter '" + param_name + "' is not finite (" + bad + ")";
  return false;
}

void UpdateGuard::commit(const GuardedUpdate& update, const ParamTensors& target) {
  if (proven_[target.index]) {
    update.rule.update(update.context, update.constants, target, update.chain, update.fused);
  } else {
    auto& pending = pending_[target.index];
    target.param.copy_(pending.param);
    if (target.velocity) target.velocity->copy_(pending.velocity);
    for (size_t s = 0; s < pending.slots.size(); ++s) (*target.slots)[s].copy_(pending.slots[s]);
    pending = Pending{};
  }
  // The fused kernels write through raw pointers; tell autograd the tensors changed (and
  // this guard, which reads their versions).
  torch::autograd::impl::bump_version(target.param);
}

void UpdateGuard::record(size_t index, const at::Tensor& param, const at::Tensor& velocity,
                         const std::vector<at::Tensor>& slots) {
  auto& known = known_[index];
  std::swap(known.ranges, next_ranges_[index]);
  const size_t count = 2 + slots.size();
  known.tensors.resize(count);
  known.versions.resize(count);
  auto note = [&](size_t k, const at::Tensor& t) {
    known.tensors[k] = t.defined() ? identity(t) : nullptr;
    known.versions[k] = t.defined() ? version(t) : 0;
  };
  note(0, param);
  note(1, velocity);
  for (size_t s = 0; s < slots.size(); ++s) note(2 + s, slots[s]);
}

}  // namespace downhill::detail
