#pragma once
// The built-in learning-rate schedules: factories of Schedule, the factor f(t) that
// Options::learning_rate_schedule multiplies the rule's update number t by (0 for the first).

#include <downhill/options.h>

#include <cstdint>
#include <vector>

namespace downhill::schedules {

// Every factory checks its arguments when it is called, not at the first update, and
// throws std::invalid_argument naming the schedule, the argument, its value and the
// allowed range. The arithmetic below is the whole definition, in double.

/// f(t) = factor^⌊t / every⌋ (std::pow): the factor is applied once every `every`
/// updates. every >= 1; factor finite and > 0. A factor > 1 grows without bound and at
/// last overflows to infinity, which learning_rate_schedule does not allow.
Schedule step(int64_t every, double factor);

/// f(t) = gamma^t (std::pow). gamma finite and > 0; as with step, gamma > 1 grows
/// without bound.
Schedule exponential(double gamma);

/// Cosine annealing from 1 down to `floor` over `total` updates:
/// f(t) = floor + (1 − floor)·(1 + cos(π·min(t, total) / total)) / 2, so f(0) = 1 and
/// f(t) = floor (exactly) for t >= total. total >= 1; floor in [0, 1].
Schedule cosine(int64_t total, double floor = 0.0);

/// Linear warm-up: f(t) = (t + 1) / steps for t < steps, then `then(t − steps)`, or 1 when
/// `then` is empty; the schedule that follows starts from its own update 0. steps >= 1.
Schedule linear_warmup(int64_t steps, Schedule then = {});

/// Piecewise constant: f(t) = values[i], i = the number of boundaries <= t, so values[0]
/// holds before boundaries[0] and values.back() from boundaries.back() on. boundaries
/// strictly increasing, each >= 1; values.size() == boundaries.size() + 1; each value
/// finite and >= 0.
Schedule piecewise(std::vector<int64_t> boundaries, std::vector<double> values);

/// f(t) = value: for composing, e.g. a warm-up followed by a constant factor. value finite
/// and >= 0.
Schedule constant(double value);

}  // namespace downhill::schedules
