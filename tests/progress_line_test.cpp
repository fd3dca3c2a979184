// The progress line on a terminal, during a validation too: a child process runs a loop whose
// first validation takes about 1.6 s with its stderr on a pseudo-terminal, and the test reads
// what the terminal shows. A program of its own: the loop asks whether stderr is a terminal
// once per process, so no loop may run in this process before the child is forked.
#include <downhill/downhill.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

namespace {

using ::testing::HasSubstr;

// In the child: least squares on 8 samples, validated on 8 batches of one sample before the
// one pass, the first validation's batches 200 ms each.
void run_with_slow_validation() {
  auto w = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
  const auto x = torch::linspace(0, 1, 8, torch::kDouble).reshape({8, 1});
  int validation_batches = 0;
  auto loss = [&](const downhill::Batch& b) -> downhill::Evaluation {
    if (downhill::current_phase() == downhill::Phase::kValidation && ++validation_batches <= 8) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return (b[0].matmul(w) - 2 * b[0].squeeze(1)).square().mean();
  };
  downhill::Dataset train({x}, downhill::DatasetOptions().batch_size(4));
  downhill::Dataset valid({x}, downhill::DatasetOptions().batch_size(1).name("valid"));
  auto opt = downhill::build("sgd", loss, {{"w", w}}, downhill::Options().max_passes(1));
  opt->minimize(train, &valid);
}

TEST(ProgressLine, AValidationLongerThanASecondShowsItsProgressOnATerminal) {
  const int terminal = posix_openpt(O_RDWR | O_NOCTTY);
  if (terminal < 0) GTEST_SKIP() << "this machine gives no pseudo-terminal (posix_openpt)";
  ASSERT_EQ(grantpt(terminal), 0);
  ASSERT_EQ(unlockpt(terminal), 0);
  const std::string device = ptsname(terminal);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const int side = open(device.c_str(), O_RDWR | O_NOCTTY);
    if (side < 0 || dup2(side, STDERR_FILENO) < 0) _exit(2);
    close(terminal);
    try {
      run_with_slow_validation();
    } catch (...) {
      _exit(3);
    }
    _exit(0);
  }
  // What the terminal shows, until the child has exited and nothing is left to read (at most
  // 60 s: then the child is killed).
  std::string shown;
  int status = 0;
  bool exited = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd ready{terminal, POLLIN, 0};
    if (poll(&ready, 1, 100) > 0 && (ready.revents & POLLIN)) {
      char buffer[4096];
      const ssize_t got = read(terminal, buffer, sizeof buffer);
      if (got > 0) {
        shown.append(buffer, static_cast<size_t>(got));
        continue;
      }
    }
    if (exited) break;
    exited = waitpid(child, &status, WNOHANG) == child;
  }
  if (!exited) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
  }
  close(terminal);
  ASSERT_TRUE(exited) << "the child did not finish within 60 s; it showed:\n" << shown;
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << shown;
  // "\r\033[KSGD validation 6/8 batches 1.2s loss=…", at least once after the first second.
  EXPECT_THAT(shown, HasSubstr("\r\033[KSGD validation "));
  EXPECT_THAT(shown, HasSubstr("/8 batches "));
  // And cleared after: a clearing that no line follows.
  const size_t last = shown.rfind("\r\033[KSGD validation ");
  ASSERT_NE(last, std::string::npos);
  const size_t cleared = shown.find("\r\033[K", last + 1);
  ASSERT_NE(cleared, std::string::npos) << shown;
  EXPECT_NE(shown.compare(cleared + 4, 3, "SGD"), 0) << shown;
}

}  // namespace
