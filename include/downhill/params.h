#pragma once
// The parameters an optimizer updates: an ordered list of named tensors.

#include <downhill/options.h>
#include <torch/ordered_dict.h>
#include <torch/types.h>

#include <cstddef>
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace downhill {

/// A parameter group's update settings, as a change to a copy of the optimizer's
/// options: `[](Options& o) { o.learning_rate(1e-2).weight_decay(0); }`.
using GroupSettings = std::function<void(Options&)>;

/// The parameters to optimize, an ordered list of (name, tensor), in groups.
///
/// Tensors are shared, never copied: the optimizer updates them in place, so the
/// caller's `torch::Tensor` handles see every update.
///
/// Group 0 holds the entries given to the constructor and uses the optimizer's options.
/// group() and frozen() append more entries as further groups (docs/guide.md, "Parameter
/// groups"); names stay unique across groups, and state, checkpoints, monitors and errors
/// name each parameter as before.
class Params {
 public:
  using Entry = std::pair<std::string, torch::Tensor>;

  Params() = default;
  /// From named tensors: `{{"u", u}, {"v", v}}`.
  Params(std::initializer_list<Entry> entries);
  /// From named tensors.
  Params(std::vector<Entry> entries);  // NOLINT: implicit by design
  /// From `module->named_parameters()`.
  Params(const torch::OrderedDict<std::string, torch::Tensor>& named);  // NOLINT
  /// From plain tensors, named `param0`, `param1`, ...
  Params(const std::vector<torch::Tensor>& tensors);  // NOLINT
  /// From a brace list of tensors, `{a, b}`, named `param0`, `param1`, ... (as
  /// torch::optim accepts them).
  Params(std::initializer_list<torch::Tensor> tensors);

  /// Appends `entries` as a new group whose update settings (learning rate, momentum,
  /// clipping, weight decay, the algorithm's hyperparameters, schedule) are the optimizer's
  /// options changed by `settings`. Changing a loop setting there is refused at build.
  Params& group(const Params& entries, GroupSettings settings);
  /// Appends `entries` as a frozen group: they stay in params() but are never changed,
  /// and need not require grad.
  Params& frozen(const Params& entries);

  /// The number of groups, 1 + those appended.
  size_t group_count() const noexcept { return groups_.size(); }
  /// The group of entry `index`.
  size_t group_of(size_t index) const { return group_of_.at(index); }
  /// The settings change of group `group` (empty for group 0 and for frozen groups).
  const GroupSettings& group_settings(size_t group) const { return groups_.at(group).settings; }
  /// Whether group `group` is frozen.
  bool is_frozen(size_t group) const { return groups_.at(group).frozen; }

  size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  const std::string& name(size_t index) const { return entries_.at(index).first; }
  const torch::Tensor& tensor(size_t index) const { return entries_.at(index).second; }
  /// The tensors in order (shallow handles to the same storage).
  std::vector<torch::Tensor> tensors() const;

  auto begin() const noexcept { return entries_.begin(); }
  auto end() const noexcept { return entries_.end(); }

 private:
  struct Group {
    GroupSettings settings;
    bool frozen = false;
  };
  void append(const Params& entries, Group group);
  void number_group_zero();

  std::vector<Entry> entries_;
  std::vector<size_t> group_of_;  // one per entry
  std::vector<Group> groups_ = {Group{}};
};

}  // namespace downhill
