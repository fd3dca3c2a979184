// Helper of checkpoint_test's kill test: writes checkpoints to one file in a loop,
// each with different contents, until it is killed.
//
//   checkpoint_writer PATH FIRST_COUNTER
//
// Checkpoint k holds k in every element of the parameter and of every state
// tensor. It prints "ready" before the first write and "k" after each write of
// k is complete (renamed into place), one per line, flushed.
#include <downhill/downhill.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "checkpoint_problem.h"
#include "test_support.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s PATH FIRST_COUNTER\n", argv[0]);
    return 2;
  }
  const std::string path = argv[1];
  const long long first = std::atoll(argv[2]);
  const downhill::testing::ScopedLogLevel quiet(spdlog::level::off);
  auto param = torch::zeros({kill_test::kElements});
  auto opt = kill_test::make_optimizer(param);
  torch::NoGradGuard no_grad;
  std::printf("ready\n");
  std::fflush(stdout);
  for (long long counter = first;; ++counter) {
    param.fill_(static_cast<double>(counter));
    for (auto& [name, tensor] : opt->state()) tensor.fill_(static_cast<double>(counter));
    opt->save_checkpoint(path);
    std::printf("%lld\n", counter);
    std::fflush(stdout);
  }
}
