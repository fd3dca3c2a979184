#pragma once
// Named tensors, as Optimizer::state() returns the optimizer's state.

#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

namespace downhill {

/// Named state tensors of an optimizer, e.g. {"u.G", tensor}.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

}  // namespace downhill
