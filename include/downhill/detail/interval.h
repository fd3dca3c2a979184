#pragma once
// Interval arithmetic for the update guard: the chain body run with V = Interval<T> takes,
// in place of one element, the range [lo, hi] every element of a tensor lies in, and gives
// ranges that every element of the results lies in, as the fused kernel computes them in T
// (float or double). An interval is "bad" where the kernel's value could fail to be finite:
// a bound beyond max(T)/16, a division by a range that holds 0, the square root of a range
// that reaches below 0. A result that is not bad is proof that the update writes finite
// values only (docs/architecture.md, "The guard").
//
// Bounds are doubles, widened after each rounded operation by 2^-20 of their size plus
// T's smallest normal number: more than one rounding of T (float: 2^-24) and of the double
// bound itself, so a range holds the kernel's rounded value, flushed denormals included.
// Rounding keeps a value's sign, so a bound at 0 stays at 0.

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

namespace downhill::detail {

/// A closed range of values of a chain body in element type T (float or double).
template <typename T>
class Interval {
 public:
  /// [0, 0].
  Interval() = default;
  /// A constant: `value` rounded to T, as RuleContext::constant rounds it for the kernel.
  template <typename S>
  requires std::is_arithmetic_v<S>
  explicit Interval(S value) {
    const double rounded = static_cast<double>(static_cast<T>(value));
    *this = exact(rounded, rounded);
  }

  /// [lo, hi] as given (no widening), bad unless both are finite, lo <= hi, within limit.
  static Interval exact(double lo, double hi) {
    Interval out;
    out.lo_ = lo;
    out.hi_ = hi;
    out.ok_ = lo <= hi && std::abs(lo) <= kLimit && std::abs(hi) <= kLimit;  // false for NaN
    return out;
  }
  /// [lo, hi] computed with rounding: widened outward, then checked.
  static Interval rounded(double lo, double hi) {
    const double low =
        lo >= 0 ? std::max(0.0, lo - lo * kRelative - kTiny) : lo + lo * kRelative - kTiny;
    const double high =
        hi <= 0 ? std::min(0.0, hi - hi * kRelative + kTiny) : hi + hi * kRelative + kTiny;
    return exact(low, high);
  }
  static Interval bad() {
    Interval out;
    out.ok_ = false;
    return out;
  }

  double lo() const noexcept { return lo_; }
  double hi() const noexcept { return hi_; }
  /// Whether every value of the range is provably finite in T.
  bool ok() const noexcept { return ok_; }

  Interval& operator+=(const Interval& other) { return *this = *this + other; }
  Interval& operator-=(const Interval& other) { return *this = *this - other; }
  Interval& operator*=(const Interval& other) { return *this = *this * other; }
  Interval& operator/=(const Interval& other) { return *this = *this / other; }

  /// Bounds beyond this are not provably finite: far from T's largest value, so that no
  /// rounding of the kernel can reach infinity.
  static constexpr double kLimit = static_cast<double>(std::numeric_limits<T>::max()) / 16;
  static constexpr double kRelative = 1.0 / (1 << 20);
  static constexpr double kTiny = static_cast<double>(std::numeric_limits<T>::min());

 private:
  double lo_ = 0.0;
  double hi_ = 0.0;
  bool ok_ = true;
};

template <typename>
inline constexpr bool kNeverTrue = false;

/// Whether a comparison of intervals can be true, and whether it can be false.
struct IntervalCondition {
  bool can_be_true = true;
  bool can_be_false = true;
  /// A rule body that branches on a value (`if (g > 0)`, `g > 0 ? a : b`, `&&`) cannot run on
  /// ranges, where a comparison may be both true and false: this turns the long overload error
  /// into one line that says what to write instead.
  template <typename B>
  requires std::is_same_v<B, bool>
  operator B() const {
    static_assert(kNeverTrue<B>,
                  "downhill: a rule body must not branch on a value (if, ?:, &&, ||): write "
                  "downhill::lanes::select(condition, if_true, if_false), or declare "
                  "`static constexpr bool kBounded = false;` in the rule (downhill/rule.h)");
    return false;
  }
};

template <typename T>
Interval<T> hull(const Interval<T>& a, const Interval<T>& b) {
  if (!a.ok() || !b.ok()) return Interval<T>::bad();
  return Interval<T>::exact(std::min(a.lo(), b.lo()), std::max(a.hi(), b.hi()));
}

template <typename T>
Interval<T> operator+(const Interval<T>& a, const Interval<T>& b) {
  if (!a.ok() || !b.ok()) return Interval<T>::bad();
  return Interval<T>::rounded(a.lo() + b.lo(), a.hi() + b.hi());
}

template <typename T>
Interval<T> operator-(const Interval<T>& a, const Interval<T>& b) {
  if (!a.ok() || !b.ok()) return Interval<T>::bad();
  return Interval<T>::rounded(a.lo() - b.hi(), a.hi() - b.lo());
}

template <typename T>
Interval<T> operator-(const Interval<T>& a) {
  if (!a.ok()) return a;
  return Interval<T>::exact(-a.hi(), -a.lo());
}

template <typename T>
Interval<T> operator*(const Interval<T>& a, const Interval<T>& b) {
  if (!a.ok() || !b.ok()) return Interval<T>::bad();
  const double p1 = a.lo() * b.lo(), p2 = a.lo() * b.hi(), p3 = a.hi() * b.lo(),
               p4 = a.hi() * b.hi();
  return Interval<T>::rounded(std::min({p1, p2, p3, p4}), std::max({p1, p2, p3, p4}));
}

/// Bad when the divisor's range holds 0.
template <typename T>
Interval<T> operator/(const Interval<T>& a, const Interval<T>& b) {
  if (!a.ok() || !b.ok() || !(b.lo() > 0 || b.hi() < 0)) return Interval<T>::bad();
  const double q1 = a.lo() / b.lo(), q2 = a.lo() / b.hi(), q3 = a.hi() / b.lo(),
               q4 = a.hi() / b.hi();
  return Interval<T>::rounded(std::min({q1, q2, q3, q4}), std::max({q1, q2, q3, q4}));
}

// Comparisons: what the kernel's comparison of two values in the ranges can give.
template <typename T>
IntervalCondition operator<(const Interval<T>& a, const Interval<T>& b) {
  if (!a.ok() || !b.ok()) return {};
  return {a.lo() < b.hi(), !(a.hi() < b.lo())};
}
template <typename T>
IntervalCondition operator>(const Interval<T>& a, const Interval<T>& b) {
  return b < a;
}
template <typename T>
IntervalCondition operator<=(const Interval<T>& a, const Interval<T>& b) {
  if (!a.ok() || !b.ok()) return {};
  return {a.lo() <= b.hi(), !(a.hi() <= b.lo())};
}
template <typename T>
IntervalCondition operator>=(const Interval<T>& a, const Interval<T>& b) {
  return b <= a;
}

// An arithmetic scalar with an interval (`2 * g`, `g > 0`): the scalar exactly, as the
// kernel uses it.
template <typename T, typename S>
requires std::is_arithmetic_v<S> Interval<T> as_interval(S value) {
  return Interval<T>::exact(static_cast<double>(value), static_cast<double>(value));
}
#define DOWNHILL_INTERVAL_SCALAR_OPERATOR(op, result)                              \
  template <typename T, typename S>                                                \
  requires std::is_arithmetic_v<S> result operator op(const Interval<T>& a, S b) { \
    return a op as_interval<T>(b);                                                 \
  }                                                                                \
  template <typename T, typename S>                                                \
  requires std::is_arithmetic_v<S> result operator op(S a, const Interval<T>& b) { \
    return as_interval<T>(a) op b;                                                 \
  }
DOWNHILL_INTERVAL_SCALAR_OPERATOR(+, Interval<T>)
DOWNHILL_INTERVAL_SCALAR_OPERATOR(-, Interval<T>)
DOWNHILL_INTERVAL_SCALAR_OPERATOR(*, Interval<T>)
DOWNHILL_INTERVAL_SCALAR_OPERATOR(/, Interval<T>)
DOWNHILL_INTERVAL_SCALAR_OPERATOR(<, IntervalCondition)
DOWNHILL_INTERVAL_SCALAR_OPERATOR(>, IntervalCondition)
DOWNHILL_INTERVAL_SCALAR_OPERATOR(<=, IntervalCondition)
DOWNHILL_INTERVAL_SCALAR_OPERATOR(>=, IntervalCondition)
#undef DOWNHILL_INTERVAL_SCALAR_OPERATOR

}  // namespace downhill::detail

namespace downhill::lanes {

// The lanes functions on intervals (downhill/lanes.h has them for elements and tensors).

/// Either value when the condition is undecided; only the chosen one when it is decided
/// (the other may then be bad: the kernel computes it but does not keep it).
template <typename T>
detail::Interval<T> select(detail::IntervalCondition condition, const detail::Interval<T>& if_true,
                           const detail::Interval<T>& if_false) {
  if (!condition.can_be_false) return if_true;
  if (!condition.can_be_true) return if_false;
  return detail::hull(if_true, if_false);
}

template <typename T>
detail::Interval<T> sqrt(const detail::Interval<T>& x) {
  if (!x.ok() || !(x.lo() >= 0)) return detail::Interval<T>::bad();
  return detail::Interval<T>::rounded(std::sqrt(x.lo()), std::sqrt(x.hi()));
}

template <typename T>
detail::Interval<T> abs(const detail::Interval<T>& x) {
  if (!x.ok() || x.lo() >= 0) return x;
  if (x.hi() <= 0) return -x;
  return detail::Interval<T>::exact(0.0, std::max(-x.lo(), x.hi()));
}

template <typename T>
detail::Interval<T> max(const detail::Interval<T>& a, const detail::Interval<T>& b) {
  if (!a.ok() || !b.ok()) return detail::Interval<T>::bad();
  return detail::Interval<T>::exact(std::max(a.lo(), b.lo()), std::max(a.hi(), b.hi()));
}

template <typename T>
detail::Interval<T> min(const detail::Interval<T>& a, const detail::Interval<T>& b) {
  if (!a.ok() || !b.ok()) return detail::Interval<T>::bad();
  return detail::Interval<T>::exact(std::min(a.lo(), b.lo()), std::min(a.hi(), b.hi()));
}

template <typename T>
detail::Interval<T> clamp(const detail::Interval<T>& x, const detail::Interval<T>& low,
                          const detail::Interval<T>& high) {
  return min(max(x, low), high);
}

template <typename T>
detail::Interval<T> sign(const detail::Interval<T>& x) {
  if (!x.ok()) return x;
  auto sign_of = [](double v) { return static_cast<double>((v > 0) - (v < 0)); };
  return detail::Interval<T>::exact(sign_of(x.lo()), sign_of(x.hi()));
}

}  // namespace downhill::lanes
