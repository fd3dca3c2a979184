#include "interrupt.h"

#include <atomic>
#include <csignal>
#include <mutex>

namespace downhill::detail {

namespace {

std::atomic<bool> interrupt_requested{false};
std::mutex install_mutex;
int install_depth = 0;
struct sigaction previous_action;

extern "C" void on_sigint(int signal_number) {
  if (interrupt_requested.exchange(true)) {
    // A second Ctrl-C: hand the signal to whatever handled it before us.
    sigaction(SIGINT, &previous_action, nullptr);
    raise(signal_number);
  }
}

}  // namespace

InterruptGuard::InterruptGuard() {
  std::lock_guard<std::mutex> lock(install_mutex);
  if (install_depth++ > 0) return;
  interrupt_requested = false;
  struct sigaction action {};
  action.sa_handler = on_sigint;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;
  sigaction(SIGINT, &action, &previous_action);
}

InterruptGuard::~InterruptGuard() {
  std::lock_guard<std::mutex> lock(install_mutex);
  if (--install_depth > 0) return;
  sigaction(SIGINT, &previous_action, nullptr);
  interrupt_requested = false;
}

bool InterruptGuard::requested() noexcept { return interrupt_requested.load(); }

}  // namespace downhill::detail
