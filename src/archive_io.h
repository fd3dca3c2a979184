#pragma once
// Reading and writing checkpoint archive entries, shared by the parts that save their
// own state (the update engine, the loop) and by the checkpoint file itself
// (checkpoint.cpp, which has the file format). Internal.

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

// Declared only: the archive headers are heavy, and only the files that read or write
// entries include them.
namespace torch::serialize {
class InputArchive;
class OutputArchive;
}  // namespace torch::serialize

namespace downhill::detail {

/// Throws std::invalid_argument saying how the checkpoint is of another problem.
using Mismatch = std::function<void(const std::string& what)>;

/// "param_3", "state_3_1": the key of an entry of parameter (and slot) number a (b).
std::string archive_key(const char* kind, size_t a);
std::string archive_key(const char* kind, size_t a, size_t b);

at::Tensor read_tensor(torch::serialize::InputArchive& archive, const std::string& name);
c10::IValue read_value(torch::serialize::InputArchive& archive, const std::string& name);

/// int64 values as a tensor, and back.
at::Tensor to_tensor(const std::vector<int64_t>& values);
std::vector<int64_t> to_vector(const at::Tensor& t);

/// Calls `mismatch` unless `saved` has the shape and dtype of `live`: copy_() would
/// broadcast a wrong shape silently.
void expect_like(const at::Tensor& saved, const at::Tensor& live, const std::string& what,
                 const Mismatch& mismatch);

}  // namespace downhill::detail
