#pragma once
// The parameters an optimizer updates: an ordered list of named tensors.

#include <torch/ordered_dict.h>
#include <torch/types.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace downhill {

/// The parameters to optimize, an ordered list of (name, tensor).
///
/// Tensors are shared, never copied: the optimizer updates them in place, so the
/// caller's `torch::Tensor` handles see every update.
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

  size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  const std::string& name(size_t index) const { return entries_.at(index).first; }
  const torch::Tensor& tensor(size_t index) const { return entries_.at(index).second; }
  /// The tensors in order (shallow handles to the same storage).
  std::vector<torch::Tensor> tensors() const;

  auto begin() const noexcept { return entries_.begin(); }
  auto end() const noexcept { return entries_.end(); }

 private:
  std::vector<Entry> entries_;
};

}  // namespace downhill
