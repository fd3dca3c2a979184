// The checks every optimizer's parameters pass at build (param_checks.h).
#include "param_checks.h"

#include <ATen/MemoryOverlap.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "text.h"

namespace downhill::detail {

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

// Whether some elements of `tensor` share memory with each other (a stride of 0, expand(),
// as_strided() over itself): an update of it would write one location twice. Exact where ATen
// can tell; otherwise the strides must leave each dimension clear of the smaller ones.
bool elements_may_overlap(const at::Tensor& tensor) {
  const auto overlap = at::has_internal_overlap(tensor);
  if (overlap != at::MemOverlap::TooHard) return overlap == at::MemOverlap::Yes;
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size) of dimensions over 1
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    if (tensor.size(d) > 1) dims.emplace_back(std::abs(tensor.stride(d)), tensor.size(d));
  }
  std::sort(dims.begin(), dims.end());
  int64_t reach = 0;  // the largest offset the smaller dimensions span
  for (const auto& [stride, size] : dims) {
    if (stride <= reach) return true;
    reach += (size - 1) * stride;
  }
  return false;
}

}  // namespace

void check_params(const Params& params) {
  if (params.empty()) {
    throw std::invalid_argument(
        "downhill: no parameters to optimize; pass at least one tensor in Params");
  }
  std::unordered_set<const void*> seen_tensors;
  std::unordered_set<std::string> seen_names;
  for (size_t index = 0; index < params.size(); ++index) {
    const auto& name = params.name(index);
    const auto& tensor = params.tensor(index);
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
    if (elements_may_overlap(tensor)) {
      throw std::invalid_argument(
          "downhill: parameter '" + name + "' (" + describe(tensor) +
          ") has elements that share memory with each other (a stride of 0, expand(), or an "
          "as_strided() view over itself), so an update would write one place twice; allowed: "
          "a tensor whose elements are distinct, such as its clone()");
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
  }
  check_overlaps(params);
}

}  // namespace downhill::detail

namespace downhill::detail {

void check_searched_params(const std::string& algorithm, const Params& params) {
  for (size_t g = 1; g < params.group_count(); ++g) {
    if (params.is_frozen(g)) continue;
    throw std::invalid_argument(
        "downhill: " + algorithm +
        " updates all its parameters as one vector, with one line search: parameter group " +
        std::to_string(g) +
        " would need settings of its own; allowed: one group, and frozen groups beside it");
  }
  const at::Tensor* first = nullptr;
  size_t first_index = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    if (params.is_frozen(params.group_of(i))) continue;
    const auto& tensor = params.tensor(i);
    if (!tensor.device().is_cpu() || !tensor.is_contiguous()) {
      throw std::invalid_argument("downhill: " + algorithm + " needs contiguous CPU parameters; '" +
                                  params.name(i) + "' is " +
                                  (tensor.device().is_cpu()
                                       ? "not contiguous (.contiguous() makes a copy that is)"
                                       : describe(tensor)));
    }
    if (!first) {
      first = &tensor;
      first_index = i;
    } else if (tensor.scalar_type() != first->scalar_type()) {
      throw std::invalid_argument("downhill: " + algorithm +
                                  " updates its parameters as one vector, of one dtype; '" +
                                  params.name(first_index) + "' is " + describe(*first) + ", '" +
                                  params.name(i) + "' is " + describe(tensor));
    }
  }
}

}  // namespace downhill::detail
