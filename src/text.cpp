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

}  // namespace downhill::detail
