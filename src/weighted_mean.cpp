#include "weighted_mean.h"

#include <algorithm>

namespace downhill::detail {

void add_weighted(PassProgress& totals, const Monitors& monitors, double weight) {
  for (const auto& [name, value] : monitors) {
    auto it = std::find_if(totals.sums.begin(), totals.sums.end(),
                           [&](const PassProgress::Sum& s) { return s.name == name; });
    if (it == totals.sums.end()) it = totals.sums.insert(totals.sums.end(), {name, 0.0, 0.0});
    it->sum += weight * value;
    it->weight += weight;
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
