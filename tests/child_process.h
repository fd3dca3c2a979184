#pragma once
// Test programs that run a helper program as a child process (to SIGKILL it mid-run): start
// it with its stdout on a pipe, and read that pipe.

#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace downhill::testing {

/// A started child: its process id and the read end of its stdout.
struct Child {
  pid_t pid = -1;
  int output = -1;
};

/// Starts `argv[0]` with `argv`, its stdout on a pipe; throws std::runtime_error if it cannot.
inline Child spawn_child(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  Child child;
  const int rc = posix_spawn(&child.pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    throw std::runtime_error("cannot start " + argv[0]);
  }
  child.output = fds[0];
  return child;
}

/// Starts `argv[0]` with `argv` and the environment `env` ("NAME=value" entries), its stdout
/// and stderr written to the file `log`; returns its process id, or throws std::runtime_error.
inline pid_t spawn_logged(std::vector<std::string> argv, std::vector<std::string> env,
                          const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char*> arg_pointers, env_pointers;
  for (auto& a : argv) arg_pointers.push_back(a.data());
  arg_pointers.push_back(nullptr);
  for (auto& e : env) env_pointers.push_back(e.data());
  env_pointers.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, arg_pointers.data(),
                             env_pointers.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0]);
  return pid;
}

/// Reads the child's output until `done(text)` holds or the pipe closes.
inline std::string read_until(int fd, std::string text,
                              const std::function<bool(const std::string&)>& done) {
  char buffer[256];
  while (!done(text)) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

}  // namespace downhill::testing
