#include <downhill/params.h>

namespace downhill {

Params::Params(std::initializer_list<Entry> entries) : entries_(entries) {}

Params::Params(std::vector<Entry> entries) : entries_(std::move(entries)) {}

Params::Params(const torch::OrderedDict<std::string, torch::Tensor>& named) {
  entries_.reserve(named.size());
  for (const auto& item : named) entries_.emplace_back(item.key(), item.value());
}

Params::Params(const std::vector<torch::Tensor>& tensors) {
  entries_.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    entries_.emplace_back("param" + std::to_string(i), tensors[i]);
  }
}

Params::Params(std::initializer_list<torch::Tensor> tensors)
    : Params(std::vector<torch::Tensor>(tensors)) {}

std::vector<torch::Tensor> Params::tensors() const {
  std::vector<torch::Tensor> out;
  out.reserve(entries_.size());
  for (const auto& entry : entries_) out.push_back(entry.second);
  return out;
}

}  // namespace downhill
