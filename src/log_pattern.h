#pragma once
// The format of downhill's lines, which data parallelism tags with the rank. Internal.

#include <cstdint>
#include <string>

namespace downhill::detail {

/// The pattern downhill's sinks use: "%H:%M:%S %v", or with "[rank R]" after tag_rank.
std::string log_pattern();

/// From now on, lines say "[rank R]" after the time (a data-parallel rank other than 0).
void tag_rank(int64_t rank);

}  // namespace downhill::detail
