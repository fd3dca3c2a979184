#include <downhill/params.h>

#include <stdexcept>
#include <string>

namespace downhill {

Params::Params(std::initializer_list<Entry> entries) : entries_(entries) { number_group_zero(); }

Params::Params(std::vector<Entry> entries) : entries_(std::move(entries)) { number_group_zero(); }

Params::Params(const torch::OrderedDict<std::string, torch::Tensor>& named) {
  entries_.reserve(named.size());
  for (const auto& item : named) entries_.emplace_back(item.key(), item.value());
  number_group_zero();
}

Params::Params(const std::vector<torch::Tensor>& tensors) {
  entries_.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    entries_.emplace_back("param" + std::to_string(i), tensors[i]);
  }
  number_group_zero();
}

Params::Params(std::initializer_list<torch::Tensor> tensors)
    : Params(std::vector<torch::Tensor>(tensors)) {}

void Params::number_group_zero() { group_of_.assign(entries_.size(), 0); }

void Params::append(const Params& entries, Group group) {
  if (entries.group_count() > 1) {
    throw std::invalid_argument(
        "downhill: the entries of a parameter group must be one group; got Params with " +
        std::to_string(entries.group_count()) + " groups");
  }
  const size_t index = groups_.size();
  groups_.push_back(std::move(group));
  for (const auto& entry : entries) {
    entries_.push_back(entry);
    group_of_.push_back(index);
  }
}

Params& Params::group(const Params& entries, GroupSettings settings) {
  append(entries, Group{std::move(settings), false});
  return *this;
}

Params& Params::frozen(const Params& entries) {
  append(entries, Group{{}, true});
  return *this;
}

std::vector<torch::Tensor> Params::tensors() const {
  std::vector<torch::Tensor> out;
  out.reserve(entries_.size());
  for (const auto& entry : entries_) out.push_back(entry.second);
  return out;
}

}  // namespace downhill
