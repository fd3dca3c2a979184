#pragma once
// The checks every optimizer's parameters pass at build; the update engine runs them.
// Internal.

#include <downhill/params.h>

namespace downhill::detail {

/// Throws std::invalid_argument naming the parameter when the parameters are empty, or one
/// is undefined, sparse, on the meta device, not float/double, named or passed twice, not
/// requiring grad (when `needs_grad`), or sharing memory with another.
void check_params(const Params& params, bool needs_grad);

}  // namespace downhill::detail
