#pragma once
// Text for error messages and name lookups, shared by the library's files.

#include <ATen/ATen.h>

#include <string>
#include <string_view>
#include <vector>

namespace downhill::detail {

/// "[3, 4]": a tensor's shape as error messages show it.
std::string shape_of(const at::Tensor& tensor);

/// "[3, 4] Float on cpu": shape, dtype and device.
std::string describe(const at::Tensor& tensor);

/// `text` in lower case (ASCII), for case-insensitive names.
std::string to_lower(std::string_view text);

/// `value` as a stream writes it (6 significant digits), for messages.
std::string format_number(double value);

/// The one of `candidates` closest to `name` (case-insensitive edit distance) when it is close
/// enough to be a likely typo (at most 2 edits, or a third of its length); empty otherwise.
/// For "did you mean" in messages.
std::string closest_name(std::string_view name, const std::vector<std::string>& candidates);

}  // namespace downhill::detail
