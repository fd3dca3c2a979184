#pragma once
// Bit-for-bit comparisons of monitors and tensors, for the tests of resumed runs.

#include <downhill/monitors.h>
#include <torch/types.h>

#include <bit>
#include <cstdint>
#include <vector>

namespace downhill::testing {

/// Bit for bit, NaN included (a pass with a skipped NaN step averages to NaN).
inline bool same_bits(double a, double b) {
  return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
}

/// The same names in the same order, each value bit for bit.
inline bool same_bits(const Monitors& a, const Monitors& b) {
  if (a.size() != b.size()) return false;
  auto x = a.begin();
  for (const auto& [name, value] : b) {
    if (x->first != name || !same_bits(x->second, value)) return false;
    ++x;
  }
  return true;
}

/// The same number of tensors, each torch::equal to its counterpart.
inline bool same_tensors(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i], b[i])) return false;
  }
  return true;
}

}  // namespace downhill::testing
