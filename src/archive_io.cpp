// The archive helpers of archive_io.h: the entry format every part writes and reads.
#include "archive_io.h"

#include <torch/serialize/input-archive.h>

#include <string>
#include <vector>

#include "text.h"

namespace downhill::detail {

std::string archive_key(const char* kind, size_t a) {
  return std::string(kind) + "_" + std::to_string(a);
}

std::string archive_key(const char* kind, size_t a, size_t b) {
  return archive_key(kind, a) + "_" + std::to_string(b);
}

at::Tensor read_tensor(torch::serialize::InputArchive& archive, const std::string& name) {
  at::Tensor t;
  archive.read(name, t);
  return t;
}

c10::IValue read_value(torch::serialize::InputArchive& archive, const std::string& name) {
  c10::IValue value;
  archive.read(name, value);
  return value;
}

at::Tensor to_tensor(const std::vector<int64_t>& values) {
  return at::tensor(values.empty() ? std::vector<int64_t>{} : values, at::kLong);
}

std::vector<int64_t> to_vector(const at::Tensor& t) {
  auto contiguous = t.to(at::kLong).contiguous();
  const auto* data = contiguous.data_ptr<int64_t>();
  return std::vector<int64_t>(data, data + contiguous.numel());
}

void expect_like(const at::Tensor& saved, const at::Tensor& live, const std::string& what,
                 const Mismatch& mismatch) {
  if (saved.sizes() != live.sizes() || saved.scalar_type() != live.scalar_type()) {
    mismatch(what + " is " + shape_of(saved) + " " +
             std::string(c10::toString(saved.scalar_type())) + " there; expected " +
             shape_of(live) + " " + std::string(c10::toString(live.scalar_type())));
  }
}

}  // namespace downhill::detail
