#pragma once
// Writing a file so that readers see either the old or the new contents, never a mix.

#include <string>

namespace downhill::detail {

/// Writes `bytes` to a temporary file in the folder of `path`, flushes and fsyncs
/// it, renames it over `path` and fsyncs the folder. Throws std::runtime_error
/// naming the path and the system error.
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace downhill::detail
