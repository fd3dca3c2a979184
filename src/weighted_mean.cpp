#include "weighted_mean.h"

#include <algorithm>
#include <cstddef>

namespace downhill::detail {

void add_weighted(PassProgress& totals, const Monitors& monitors, double weight) {
  // Batches report their monitors in the same order, as a rule: the k-th monitor is the
  // k-th sum, found without a search (linear in the number of monitors, not quadratic).
  size_t k = 0;
  for (const auto& [name, value] : monitors) {
    auto it = k < totals.sums.size() && totals.sums[k].name == name
                  ? totals.sums.begin() + static_cast<std::ptrdiff_t>(k)
                  : std::find_if(totals.sums.begin(), totals.sums.end(),
                                 [&](const PassProgress::Sum& s) { return s.name == name; });
    if (it == totals.sums.end()) it = totals.sums.insert(totals.sums.end(), {name, 0.0, 0.0});
    it->sum += weight * value;
    it->weight += weight;
    ++k;
  }
  totals.weight += weight;
}

Monitors weighted_mean(const PassProgress& totals) {
  Monitors out;
  for (const auto& s : totals.sums) out.set(s.name, s.weight > 0 ? s.sum / s.weight : 0.0);
  return out;
}

double running_loss(const PassProgress& totals) {
  return !totals.sums.empty() && totals.sums[0].weight > 0
             ? totals.sums[0].sum / totals.sums[0].weight
             : 0.0;
}

}  // namespace downhill::detail
