#pragma once
// Counting the ATen operators a piece of code runs: the fused path must run none.

#include <ATen/record_function.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

namespace downhill::testing {

namespace detail {
inline std::atomic<int64_t> operator_calls{0};
inline std::unique_ptr<at::ObserverContext> count_operator(const at::RecordFunction&) {
  ++operator_calls;
  return nullptr;
}
}  // namespace detail

/// The ATen operators `action` runs on this thread.
inline int64_t aten_operators_in(const std::function<void()>& action) {
  detail::operator_calls = 0;
  const auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(detail::count_operator).needsInputs(false));
  action();
  at::removeCallback(handle);
  return detail::operator_calls.load();
}

}  // namespace downhill::testing
