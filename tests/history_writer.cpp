// Helper of run_report_test's history kill test: runs history_test's problem with a
// checkpoint after every pass, a history file and resume(true), to its end, so that a
// killed writer started again continues the run.
//
//   history_writer FOLDER PASSES STEP_SLEEP_US
//
// It writes FOLDER/run.ckpt and FOLDER/history.jsonl, prints "pass N" after each pass (its
// history line and its checkpoint written) and "done" at the end, one per line, flushed.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "history_problem.h"
#include "test_support.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s FOLDER PASSES STEP_SLEEP_US\n", argv[0]);
    return 2;
  }
  const std::string folder = argv[1];
  const long long passes = std::atoll(argv[2]);
  const long long sleep_us = std::atoll(argv[3]);
  const downhill::testing::ScopedLogLevel quiet(spdlog::level::off);
  torch::set_num_threads(1);
  const history_test::Data data;
  const auto options = history_test::options(passes)
                           .checkpoint(folder + "/run.ckpt")
                           .checkpoint_every(1)
                           .history(folder + "/history.jsonl")
                           .resume(true);
  history_test::run(data, options, std::chrono::microseconds(sleep_us), [](int64_t pass) {
    std::printf("pass %lld\n", static_cast<long long>(pass));
    std::fflush(stdout);
    return true;
  });
  std::printf("done\n");
  std::fflush(stdout);
  return 0;
}
