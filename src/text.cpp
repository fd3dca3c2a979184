#include "text.h"

#include <algorithm>
#include <cctype>
#include <sstream>

namespace downhill::detail {

std::string shape_of(const at::Tensor& tensor) {
  std::string out = "[";
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    out += (d ? ", " : "") + std::to_string(tensor.size(d));
  }
  return out + "]";
}

std::string describe(const at::Tensor& tensor) {
  return shape_of(tensor) + " " + std::string(c10::toString(tensor.scalar_type())) + " on " +
         tensor.device().str();
}

std::string to_lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string format_number(double value) {
  std::ostringstream text;
  text << value;
  return text.str();
}

namespace {

// Levenshtein distance.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string closest_name(std::string_view name, const std::vector<std::string>& candidates) {
  const std::string lower = to_lower(name);
  std::string closest;
  size_t best = name.size();
  for (const auto& candidate : candidates) {
    const size_t distance = edit_distance(lower, candidate);
    if (distance < best && distance <= std::max<size_t>(2, candidate.size() / 3)) {
      best = distance;
      closest = candidate;
    }
  }
  return closest;
}

}  // namespace downhill::detail
