#pragma once
// The checks every optimizer's parameters pass at build; the update engine runs them.
// Internal.

#include <downhill/params.h>

#include <string>

namespace downhill::detail {

/// Throws std::invalid_argument naming the parameter when the parameters are empty, or one
/// is undefined, sparse, on the meta device, not float/double, named or passed twice, or
/// sharing memory with another. (Whether they require grad is checked when autograd is first
/// asked for their gradient: a loss may return its own.)
void check_params(const Params& params);

}  // namespace downhill::detail

namespace downhill::detail {

/// For an algorithm that searches along a line over all its parameters as one vector
/// (`algorithm`, L-BFGS): throws std::invalid_argument unless every group but the first is
/// frozen, and the parameters that update share one dtype and are contiguous CPU tensors.
void check_searched_params(const std::string& algorithm, const Params& params);

}  // namespace downhill::detail
