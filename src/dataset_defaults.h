#pragma once
// Defaults of a Dataset that the loop also reads (to say when one was taken). Internal.

#include <cstdint>

namespace downhill::detail {

/// Batches per pass of a generator dataset whose options set no iteration_size.
inline constexpr int64_t kGeneratorIterationSize = 100;

}  // namespace downhill::detail
