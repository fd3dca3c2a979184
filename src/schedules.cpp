#include <downhill/schedules.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace downhill::schedules {

namespace {

// The message of Options::validate, with the schedule in place of "setting".
template <typename T>
[[noreturn]] void refuse(const char* schedule, const std::string& argument, T value,
                         const std::string& allowed) {
  std::ostringstream message;
  message << "downhill: schedules::" << schedule << ": " << argument << " = " << value
          << " is invalid; allowed: " << allowed;
  throw std::invalid_argument(message.str());
}

// `value > 0`, written so that NaN fails too.
void require_positive(const char* schedule, const char* argument, double value) {
  if (!(value > 0) || std::isinf(value)) refuse(schedule, argument, value, "a finite number > 0");
}

void require_non_negative(const char* schedule, const char* argument, double value) {
  if (!(value >= 0) || std::isinf(value)) {
    refuse(schedule, argument, value, "a finite number >= 0");
  }
}

void require_at_least_one(const char* schedule, const char* argument, int64_t value) {
  if (value < 1) refuse(schedule, argument, value, "an integer >= 1");
}

}  // namespace

Schedule step(int64_t every, double factor) {
  require_at_least_one("step", "every", every);
  require_positive("step", "factor", factor);
  return [every, factor](int64_t t) { return std::pow(factor, static_cast<double>(t / every)); };
}

Schedule exponential(double gamma) {
  require_positive("exponential", "gamma", gamma);
  return [gamma](int64_t t) { return std::pow(gamma, static_cast<double>(t)); };
}

Schedule cosine(int64_t total, double floor) {
  require_at_least_one("cosine", "total", total);
  if (!(floor >= 0 && floor <= 1)) refuse("cosine", "floor", floor, "[0, 1]");
  return [total, floor](int64_t t) {
    // The formula gives floor here too when cos(π) rounds to −1; this makes it exact.
    if (t >= total) return floor;
    const double angle = std::numbers::pi * static_cast<double>(t) / static_cast<double>(total);
    return floor + (1.0 - floor) * (1.0 + std::cos(angle)) / 2.0;
  };
}

Schedule linear_warmup(int64_t steps, Schedule then) {
  require_at_least_one("linear_warmup", "steps", steps);
  return [steps, then = std::move(then)](int64_t t) {
    if (t < steps) return static_cast<double>(t + 1) / static_cast<double>(steps);
    return then ? then(t - steps) : 1.0;
  };
}

Schedule piecewise(std::vector<int64_t> boundaries, std::vector<double> values) {
  for (size_t i = 0; i < boundaries.size(); ++i) {
    const std::string name = "boundaries[" + std::to_string(i) + "]";
    if (i == 0) {
      if (boundaries[0] < 1) refuse("piecewise", name, boundaries[0], "an integer >= 1");
    } else if (boundaries[i] <= boundaries[i - 1]) {
      refuse("piecewise", name, boundaries[i],
             "an integer > boundaries[" + std::to_string(i - 1) + "] (" +
                 std::to_string(boundaries[i - 1]) + ")");
    }
  }
  if (values.size() != boundaries.size() + 1) {
    refuse("piecewise", "values.size()", values.size(),
           "boundaries.size() + 1 (" + std::to_string(boundaries.size() + 1) + ")");
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string name = "values[" + std::to_string(i) + "]";
    if (!(values[i] >= 0) || std::isinf(values[i])) {
      refuse("piecewise", name, values[i], "a finite number >= 0");
    }
  }
  return [boundaries = std::move(boundaries), values = std::move(values)](int64_t t) {
    const auto passed = std::upper_bound(boundaries.begin(), boundaries.end(), t);
    return values[static_cast<size_t>(passed - boundaries.begin())];
  };
}

Schedule constant(double value) {
  require_non_negative("constant", "value", value);
  return [value](int64_t) { return value; };
}

}  // namespace downhill::schedules
