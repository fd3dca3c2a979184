#include "callbacks/checkpoint_writer.h"

#include <downhill/logging.h>
#include <downhill/optimizer.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "rank_group.h"

namespace downhill::detail {

void CheckpointWriter::check_folder(const std::string& path) {
  if (path.empty()) return;
  const std::filesystem::path file(path);
  const auto folder = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
  std::error_code error;
  if (!std::filesystem::is_directory(folder, error)) {
    throw std::invalid_argument("downhill: checkpoint '" + path + "': the folder '" +
                                folder.string() +
                                "' does not exist; create it, or choose another path");
  }
  if (std::filesystem::is_directory(file, error)) {
    throw std::invalid_argument("downhill: checkpoint '" + path +
                                "' is a directory; give the path of a file");
  }
  // Creating is the only sure test (access() says yes to root in /proc): the temporary file
  // a write would make, made and removed.
  const std::string probe = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int cause = errno;
    throw std::invalid_argument("downhill: checkpoint '" + path + "': cannot create a file in '" +
                                folder.string() + "' (" + std::strerror(cause) + ")");
  }
  ::close(fd);
  ::unlink(probe.c_str());
}

void CheckpointWriter::on_pass_end(const RunView& run) {
  if (run.passes % run.optimizer.options().checkpoint_every() == 0) write(run);
}

void CheckpointWriter::write(const RunView& run) {
  const auto& path = run.optimizer.options().checkpoint();
  if (path.empty() || !ranks_.writes_files()) return;
  try {
    run.optimizer.save_checkpoint(path, &train_, valid_);
  } catch (const std::exception& e) {
    logger()->error("could not write the checkpoint: {}; the run goes on without it", e.what());
  }
}

}  // namespace downhill::detail
