#pragma once
// Monitors averaged over batches, each batch weighted by its samples: written once for
// training passes and for evaluate().
#include <downhill/monitors.h>

#include "loop_state.h"

namespace downhill::detail {

/// Adds `monitors`, weighted by `weight`, to `totals`, matching them by name. A monitor
/// that only some batches report is averaged over those batches.
void add_weighted(PassProgress& totals, const Monitors& monitors, double weight);
/// The weighted means, in the order the monitors first appeared.
Monitors weighted_mean(const PassProgress& totals);
/// The weighted mean of the first monitor (the loss) so far; 0 before any batch.
double running_loss(const PassProgress& totals);

}  // namespace downhill::detail
