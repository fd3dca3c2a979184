// The built-in learning-rate schedules (downhill/schedules.h): each value to the bit against
// arithmetic restated here, and each refused argument with its whole message.
#include <downhill/schedules.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numbers>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using downhill::Schedule;
namespace schedules = downhill::schedules;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kPi = std::numbers::pi;

// The updates every schedule is checked on: past each one's last change.
constexpr int64_t kLast = 20;

// The message of the std::invalid_argument that `make` throws; a failure otherwise.
std::string refusal(const std::function<void()>& make) {
  try {
    make();
  } catch (const std::invalid_argument& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw another type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "threw nothing";
  return {};
}

// f(0), f(1), ... against `expected`, then f(t) = expected.back() up to kLast.
void expect_values(const Schedule& f, const std::vector<double>& expected) {
  ASSERT_TRUE(f);
  for (int64_t t = 0; t <= kLast; ++t) {
    const size_t i = std::min(static_cast<size_t>(t), expected.size() - 1);
    EXPECT_EQ(f(t), expected[i]) << "t = " << t;
  }
}

// --- step ---

TEST(Schedules, StepHalvesEveryThreeUpdates) {
  const Schedule f = schedules::step(3, 0.5);
  const std::vector<double> first = {1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125};
  for (int64_t t = 0; t < static_cast<int64_t>(first.size()); ++t) {
    EXPECT_EQ(f(t), first[static_cast<size_t>(t)]) << "t = " << t;
  }
  for (int64_t t = 0; t <= kLast; ++t) {
    EXPECT_EQ(f(t), std::ldexp(1.0, -static_cast<int>(t / 3))) << "t = " << t;
  }
}

TEST(Schedules, StepOfOneIsTheFactorToTheUpdate) {
  const Schedule f = schedules::step(1, 3.0);
  double expected = 1;  // 3^20 < 2^53: every power is exact
  for (int64_t t = 0; t <= kLast; ++t) {
    EXPECT_EQ(f(t), expected) << "t = " << t;
    expected *= 3;
  }
}

TEST(Schedules, StepOfATenthIsPowersOfATenth) {
  const Schedule f = schedules::step(2, 0.1);
  for (int64_t t = 0; t <= kLast; ++t) {
    EXPECT_EQ(f(t), std::pow(0.1, static_cast<double>(t / 2))) << "t = " << t;
  }
  EXPECT_EQ(f(0), 1.0);
  EXPECT_EQ(f(1), 1.0);
  EXPECT_EQ(f(2), 0.1);
  EXPECT_EQ(f(3), 0.1);
}

TEST(Schedules, StepRefusesEveryBelowOne) {
  EXPECT_EQ(refusal([] { schedules::step(0, 0.5); }),
            "downhill: schedules::step: every = 0 is invalid; allowed: an integer >= 1");
  EXPECT_EQ(refusal([] { schedules::step(-3, 0.5); }),
            "downhill: schedules::step: every = -3 is invalid; allowed: an integer >= 1");
}

TEST(Schedules, StepRefusesAFactorNotFiniteAndPositive) {
  EXPECT_EQ(refusal([] { schedules::step(3, 0.0); }),
            "downhill: schedules::step: factor = 0 is invalid; allowed: a finite number > 0");
  EXPECT_EQ(refusal([] { schedules::step(3, -0.5); }),
            "downhill: schedules::step: factor = -0.5 is invalid; allowed: a finite number > 0");
  EXPECT_EQ(refusal([] { schedules::step(3, kNaN); }),
            "downhill: schedules::step: factor = nan is invalid; allowed: a finite number > 0");
  EXPECT_EQ(refusal([] { schedules::step(3, kInf); }),
            "downhill: schedules::step: factor = inf is invalid; allowed: a finite number > 0");
}

// --- exponential ---

TEST(Schedules, ExponentialOfAHalfHalvesEveryUpdate) {
  const Schedule f = schedules::exponential(0.5);
  for (int64_t t = 0; t <= kLast; ++t) {
    EXPECT_EQ(f(t), std::ldexp(1.0, -static_cast<int>(t))) << "t = " << t;
  }
}

TEST(Schedules, ExponentialOfTwoDoublesEveryUpdate) {
  const Schedule f = schedules::exponential(2.0);
  for (int64_t t = 0; t <= kLast; ++t) {
    EXPECT_EQ(f(t), std::ldexp(1.0, static_cast<int>(t))) << "t = " << t;
  }
}

TEST(Schedules, ExponentialIsGammaToTheUpdate) {
  const Schedule f = schedules::exponential(0.9);
  EXPECT_EQ(f(0), 1.0);
  EXPECT_EQ(f(1), 0.9);
  for (int64_t t = 0; t <= kLast; ++t) {
    EXPECT_EQ(f(t), std::pow(0.9, static_cast<double>(t))) << "t = " << t;
  }
}

TEST(Schedules, ExponentialRefusesAGammaNotFiniteAndPositive) {
  const std::string allowed = " is invalid; allowed: a finite number > 0";
  EXPECT_EQ(refusal([] { schedules::exponential(0.0); }),
            "downhill: schedules::exponential: gamma = 0" + allowed);
  EXPECT_EQ(refusal([] { schedules::exponential(-1.0); }),
            "downhill: schedules::exponential: gamma = -1" + allowed);
  EXPECT_EQ(refusal([] { schedules::exponential(kNaN); }),
            "downhill: schedules::exponential: gamma = nan" + allowed);
  EXPECT_EQ(refusal([] { schedules::exponential(kInf); }),
            "downhill: schedules::exponential: gamma = inf" + allowed);
}

// --- cosine ---

TEST(Schedules, CosineOverFourUpdatesFallsFromOneToZero) {
  expect_values(schedules::cosine(4),
                {1, (1 + std::cos(kPi / 4)) / 2, 0.5, (1 + std::cos(3 * kPi / 4)) / 2, 0});
}

TEST(Schedules, CosineOverOneUpdateIsOneThenTheFloor) {
  expect_values(schedules::cosine(1), {1, 0});
  expect_values(schedules::cosine(1, 0.25), {1, 0.25});
}

TEST(Schedules, CosineWithAFloorFallsFromOneToTheFloor) {
  const Schedule f = schedules::cosine(10, 0.1);
  EXPECT_EQ(f(0), 1.0);  // 0.1 + (1 − 0.1) rounds to 1
  for (int64_t t = 0; t < 10; ++t) {
    const double angle = kPi * static_cast<double>(t) / 10;
    EXPECT_EQ(f(t), 0.1 + 0.9 * (1 + std::cos(angle)) / 2) << "t = " << t;
  }
  for (int64_t t = 10; t <= kLast; ++t) EXPECT_EQ(f(t), 0.1) << "t = " << t;
}

TEST(Schedules, CosineWithAFloorOfOneIsOne) { expect_values(schedules::cosine(7, 1.0), {1}); }

TEST(Schedules, CosineRefusesATotalBelowOne) {
  EXPECT_EQ(refusal([] { schedules::cosine(0); }),
            "downhill: schedules::cosine: total = 0 is invalid; allowed: an integer >= 1");
  EXPECT_EQ(refusal([] { schedules::cosine(-5, 0.5); }),
            "downhill: schedules::cosine: total = -5 is invalid; allowed: an integer >= 1");
}

TEST(Schedules, CosineRefusesAFloorOutsideZeroToOne) {
  const std::string allowed = " is invalid; allowed: [0, 1]";
  EXPECT_EQ(refusal([] { schedules::cosine(4, -0.1); }),
            "downhill: schedules::cosine: floor = -0.1" + allowed);
  EXPECT_EQ(refusal([] { schedules::cosine(4, 1.5); }),
            "downhill: schedules::cosine: floor = 1.5" + allowed);
  EXPECT_EQ(refusal([] { schedules::cosine(4, kNaN); }),
            "downhill: schedules::cosine: floor = nan" + allowed);
  EXPECT_EQ(refusal([] { schedules::cosine(4, kInf); }),
            "downhill: schedules::cosine: floor = inf" + allowed);
}

// --- linear_warmup ---

TEST(Schedules, LinearWarmupRisesToOneThenStaysThere) {
  expect_values(schedules::linear_warmup(4), {0.25, 0.5, 0.75, 1});
  expect_values(schedules::linear_warmup(1), {1});
}

TEST(Schedules, LinearWarmupOfThreeIsThirds) {
  expect_values(schedules::linear_warmup(3), {1.0 / 3, 2.0 / 3, 1});
}

TEST(Schedules, LinearWarmupHandsOverToTheNextScheduleAtItsUpdateZero) {
  const Schedule f = schedules::linear_warmup(4, schedules::step(2, 0.1));
  const std::vector<double> first = {0.25, 0.5, 0.75, 1, 1, 1, 0.1, 0.1};
  for (int64_t t = 0; t < static_cast<int64_t>(first.size()); ++t) {
    EXPECT_EQ(f(t), first[static_cast<size_t>(t)]) << "t = " << t;
  }
  for (int64_t t = 4; t <= kLast; ++t) {
    EXPECT_EQ(f(t), std::pow(0.1, static_cast<double>((t - 4) / 2))) << "t = " << t;
  }
}

TEST(Schedules, LinearWarmupThenCosine) {
  const Schedule f = schedules::linear_warmup(2, schedules::cosine(4, 0.5));
  expect_values(f, {0.5, 1, 1, 0.5 + 0.5 * (1 + std::cos(kPi / 4)) / 2, 0.75,
                    0.5 + 0.5 * (1 + std::cos(3 * kPi / 4)) / 2, 0.5});
}

TEST(Schedules, LinearWarmupRefusesStepsBelowOne) {
  EXPECT_EQ(refusal([] { schedules::linear_warmup(0); }),
            "downhill: schedules::linear_warmup: steps = 0 is invalid; allowed: an integer >= 1");
  EXPECT_EQ(refusal([] { schedules::linear_warmup(-1, schedules::constant(1)); }),
            "downhill: schedules::linear_warmup: steps = -1 is invalid; allowed: an integer >= 1");
}

// --- piecewise ---

TEST(Schedules, PiecewiseChangesAtEachBoundary) {
  expect_values(schedules::piecewise({2, 5}, {1, 0.5, 0.1}), {1, 1, 0.5, 0.5, 0.5, 0.1});
}

TEST(Schedules, PiecewiseWithABoundaryAtOne) {
  expect_values(schedules::piecewise({1}, {0, 2}), {0, 2});
}

TEST(Schedules, PiecewiseWithoutBoundariesIsItsOneValue) {
  expect_values(schedules::piecewise({}, {0.3}), {0.3});
}

TEST(Schedules, PiecewiseRefusesABoundaryBelowOne) {
  EXPECT_EQ(refusal([] {
              schedules::piecewise({0, 5}, {1, 0.5, 0.1});
            }),
            "downhill: schedules::piecewise: boundaries[0] = 0 is invalid; allowed: an integer "
            ">= 1");
  EXPECT_EQ(refusal([] {
              schedules::piecewise({-2}, {1, 0.5});
            }),
            "downhill: schedules::piecewise: boundaries[0] = -2 is invalid; allowed: an integer "
            ">= 1");
}

TEST(Schedules, PiecewiseRefusesBoundariesNotStrictlyIncreasing) {
  EXPECT_EQ(refusal([] {
              schedules::piecewise({2, 2}, {1, 0.5, 0.1});
            }),
            "downhill: schedules::piecewise: boundaries[1] = 2 is invalid; allowed: an integer "
            "> boundaries[0] (2)");
  EXPECT_EQ(refusal([] {
              schedules::piecewise({1, 5, 3}, {1, 0.5, 0.1, 0});
            }),
            "downhill: schedules::piecewise: boundaries[2] = 3 is invalid; allowed: an integer "
            "> boundaries[1] (5)");
}

TEST(Schedules, PiecewiseRefusesOneValueTooFewOrTooMany) {
  EXPECT_EQ(refusal([] {
              schedules::piecewise({2, 5}, {1, 0.5});
            }),
            "downhill: schedules::piecewise: values.size() = 2 is invalid; allowed: "
            "boundaries.size() + 1 (3)");
  EXPECT_EQ(refusal([] {
              schedules::piecewise({2}, {1, 0.5, 0.1});
            }),
            "downhill: schedules::piecewise: values.size() = 3 is invalid; allowed: "
            "boundaries.size() + 1 (2)");
  EXPECT_EQ(refusal([] { schedules::piecewise({}, {}); }),
            "downhill: schedules::piecewise: values.size() = 0 is invalid; allowed: "
            "boundaries.size() + 1 (1)");
}

TEST(Schedules, PiecewiseRefusesAValueNotFiniteAndNonNegative) {
  const std::string allowed = " is invalid; allowed: a finite number >= 0";
  EXPECT_EQ(refusal([] {
              schedules::piecewise({2, 5}, {1, -0.5, 0.1});
            }),
            "downhill: schedules::piecewise: values[1] = -0.5" + allowed);
  EXPECT_EQ(refusal([] {
              schedules::piecewise({2, 5}, {1, 0.5, kNaN});
            }),
            "downhill: schedules::piecewise: values[2] = nan" + allowed);
  EXPECT_EQ(refusal([] {
              schedules::piecewise({2}, {kInf, 0.5});
            }),
            "downhill: schedules::piecewise: values[0] = inf" + allowed);
}

// --- constant ---

TEST(Schedules, ConstantIsItsValue) {
  expect_values(schedules::constant(0.3), {0.3});
  expect_values(schedules::constant(0), {0});
  expect_values(schedules::linear_warmup(2, schedules::constant(0.5)), {0.5, 1, 0.5});
}

TEST(Schedules, ConstantRefusesAValueNotFiniteAndNonNegative) {
  const std::string allowed = " is invalid; allowed: a finite number >= 0";
  EXPECT_EQ(refusal([] { schedules::constant(-1); }),
            "downhill: schedules::constant: value = -1" + allowed);
  EXPECT_EQ(refusal([] { schedules::constant(kNaN); }),
            "downhill: schedules::constant: value = nan" + allowed);
  EXPECT_EQ(refusal([] { schedules::constant(kInf); }),
            "downhill: schedules::constant: value = inf" + allowed);
}

}  // namespace
