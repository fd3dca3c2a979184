// Data-parallel training (docs/guide.md, "Scaling out"): ranks are child processes of this
// test (distributed_child), joined over 127.0.0.1 as torchrun would start them, and compared
// with one process given the matching global batch.
#include <arpa/inet.h>
#include <downhill/distributed.h>
#include <downhill/downhill.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "child_process.h"
#include "test_support.h"

namespace {

using downhill::testing::TemporaryFolder;
using Clock = std::chrono::steady_clock;

// A port nobody listens on now, from the kernel.
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return 29555;
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Rank {
  pid_t pid = -1;
  std::string out;  // the child's result file
  std::string log;  // its stdout and stderr
  int status = -1;
};

// Starts one distributed_child with torchrun's variables for `rank` of `world` (none when
// `world` is 0: a plain process).
Rank start(const TemporaryFolder& folder, const std::string& label, int rank, int world, int port,
           const std::vector<std::string>& args) {
  Rank child;
  child.out = folder.file(label + "_" + std::to_string(rank) + ".out");
  child.log = folder.file(label + "_" + std::to_string(rank) + ".log");
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    bool ours = false;
    for (const char* name : {"RANK=", "WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT=", "OMP_"}) {
      ours = ours || entry.rfind(name, 0) == 0;
    }
    if (!ours) env.push_back(entry);
  }
  env.push_back("OMP_NUM_THREADS=1");
  if (world > 0) {
    env.push_back("RANK=" + std::to_string(rank));
    env.push_back("WORLD_SIZE=" + std::to_string(world));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string(port));
  }
  std::vector<std::string> argv{DOWNHILL_DISTRIBUTED_CHILD};
  argv.insert(argv.end(), args.begin(), args.begin() + 2);
  argv.push_back(child.out);
  argv.insert(argv.end(), args.begin() + 2, args.end());
  if (world == 0) argv.push_back("distributed=0");
  child.pid = downhill::testing::spawn_logged(std::move(argv), std::move(env), child.log);
  return child;
}

// Waits for every child, at most `limit`; kills those still running then (a hang fails).
bool wait_all(std::vector<Rank>& ranks, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  bool in_time = true;
  for (auto& r : ranks) {
    while (true) {
      const pid_t done = waitpid(r.pid, &r.status, WNOHANG);
      if (done == r.pid) break;
      if (Clock::now() > deadline) {
        kill(r.pid, SIGKILL);
        waitpid(r.pid, &r.status, 0);
        in_time = false;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return in_time;
}

int exit_code(const Rank& r) { return WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1; }

// `args` with a batch size per rank.
std::vector<std::string> with_batch(std::vector<std::string> args, int batch) {
  args.push_back("batch=" + std::to_string(batch));
  return args;
}

// Runs `world` ranks (0: one plain process) to their end; their result files.
std::vector<std::string> run(const TemporaryFolder& folder, const std::string& label, int world,
                             const std::vector<std::string>& args, int expected_exit = 0) {
  const int port = free_port();
  std::vector<Rank> ranks;
  for (int r = 0; r < std::max(world, 1); ++r) {
    ranks.push_back(start(folder, label, r, world, port, args));
  }
  EXPECT_TRUE(wait_all(ranks, std::chrono::seconds(90))) << label << ": a rank hung";
  std::vector<std::string> results;
  for (const auto& r : ranks) {
    EXPECT_EQ(exit_code(r), expected_exit) << label << ": " << read_file(r.log) << read_file(r.out);
    results.push_back(read_file(r.out));
  }
  return results;
}

// Every number of a result file, in order ("pass 3 loss 0.5 ..." gives 3 and 0.5).
std::vector<double> numbers(const std::string& text) {
  std::vector<double> out;
  std::istringstream words(text);
  std::string word;
  while (words >> word) {
    char* end = nullptr;
    const double value = std::strtod(word.c_str(), &end);
    if (end != word.c_str() && *end == '\0') out.push_back(value);
  }
  return out;
}

// Whether two result files hold the same words, numbers within `tolerance` relative to the
// largest magnitude of their line.
void expect_close(const std::string& actual, const std::string& expected, double tolerance,
                  const std::string& what) {
  const auto a = numbers(actual), e = numbers(expected);
  ASSERT_EQ(a.size(), e.size()) << what << "\n" << actual << "\nvs\n" << expected;
  ASSERT_GT(a.size(), 20u) << what;
  double scale = 0;
  for (double v : e) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_NEAR(a[i], e[i], tolerance * scale) << what << ": number " << i;
  }
}

// The parameters' lines after each pass: every line after a "pass" line, but the summary.
int count_passes(const std::string& text) {
  int passes = 0;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) passes += line.rfind("pass ", 0) == 0 ? 1 : 0;
  return passes;
}

struct Case {
  std::string algo;
  int world;
  int passes;  // ≥ 20 updates: 18 slices of 4 samples, world slices per update
};

class Equivalence : public ::testing::TestWithParam<Case> {};

// W ranks with batches of 4 each ≡ one process with batches of 4·W, over ≥ 20 updates, in
// float64 to 1e-12; the ranks' parameters bit-identical after every pass.
TEST_P(Equivalence, RanksMatchOneProcessWithTheGlobalBatch) {
  const auto& c = GetParam();
  TemporaryFolder folder("dist_eq_" + c.algo + std::to_string(c.world));
  const std::string passes = "passes=" + std::to_string(c.passes);
  const auto ranks = run(folder, "ranks", c.world, {"train", c.algo, passes, "batch=4"});
  const auto single =
      run(folder, "single", 0, {"train", c.algo, passes, "batch=" + std::to_string(4 * c.world)});
  ASSERT_EQ(count_passes(single[0]), c.passes) << single[0];
  const int updates = c.passes * 18 / c.world;
  EXPECT_GE(updates, 20);
  EXPECT_NE(single[0].find("updates " + std::to_string(updates)), std::string::npos) << single[0];
  for (int r = 1; r < c.world; ++r) EXPECT_EQ(ranks[r], ranks[0]) << "rank " << r << " differs";
  expect_close(ranks[0], single[0], 1e-12, c.algo + " on " + std::to_string(c.world) + " ranks");
}

INSTANTIATE_TEST_SUITE_P(Algorithms, Equivalence,
                         ::testing::Values(Case{"sgd", 2, 3}, Case{"sgd", 3, 4}, Case{"adam", 2, 3},
                                           Case{"adam", 3, 4}, Case{"rmsprop", 2, 3},
                                           Case{"rmsprop", 3, 4}, Case{"esgd", 2, 3},
                                           Case{"esgd", 3, 4}),
                         [](const auto& info) {
                           return info.param.algo + "_" + std::to_string(info.param.world);
                         });

// A data-parallel step averages the gradients while its backward pass computes them (hooks on
// the parameters' gradient accumulators, bucket by bucket). These cases take that path beside
// what it must not change: a frozen group, a rank whose backward pass gives the gradients in
// another order (the buckets follow rank 0's), and accumulation (the window's last batch
// averages the window's mean). Each: 2 ranks ≡ one process with both ranks' batches.
struct OverlapCase {
  std::string name;
  std::vector<std::string> ranks, single;
};

class Overlap : public ::testing::TestWithParam<OverlapCase> {};

TEST_P(Overlap, TwoRanksMatchOneProcess) {
  const auto& c = GetParam();
  TemporaryFolder folder("dist_overlap_" + c.name);
  const auto ranks = run(folder, "ranks", 2, c.ranks);
  const auto single = run(folder, "single", 0, c.single);
  ASSERT_EQ(count_passes(single[0]), 3) << single[0];
  EXPECT_EQ(ranks[1], ranks[0]) << "the ranks differ";
  expect_close(ranks[0], single[0], 1e-12, c.name);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, Overlap,
    ::testing::Values(OverlapCase{"frozen",
                                  {"train", "adam", "passes=3", "batch=4", "frozen=1"},
                                  {"train", "adam", "passes=3", "batch=8", "frozen=1"}},
                      OverlapCase{
                          "order",
                          {"train", "sgd", "passes=3", "batch=4", "late_bias=1", "momentum=0.5"},
                          {"train", "sgd", "passes=3", "batch=8", "momentum=0.5"}},
                      OverlapCase{"accumulate",
                                  {"train", "rmsprop", "passes=3", "batch=4", "accumulate=3"},
                                  {"train", "rmsprop", "passes=3", "batch=8", "accumulate=3"}}),
    [](const auto& info) { return info.param.name; });

// The step takes its gradients from hooks and leaves the parameters' .grad alone; a backward()
// of the user's own, after the loop, still accumulates into .grad as autograd does.
TEST(Distributed, TheOverlappedStepLeavesGradAloneAndABackwardOfYourOwnStillAccumulates) {
  TemporaryFolder folder("dist_grads");
  const auto ranks = run(folder, "ranks", 2, {"train", "sgd", "passes=2", "check_grads=1"});
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(ranks[r].find("grads untouched 1 own backward 1"), std::string::npos) << ranks[r];
  }
}

// L-BFGS data-parallel: each point's loss and gradient are their means over the ranks, and
// every rank searches alike: 2 ranks with half the samples each ≡ one process with all 72
// (equal halves, so the mean of the ranks' means is the mean), to rounding.
TEST(Distributed, LbfgsRanksMatchOneProcessWithAllTheSamples) {
  TemporaryFolder folder("dist_lbfgs");
  const auto ranks = run(folder, "ranks", 2, {"train", "lbfgs", "passes=5", "batch=36", "lr=1"});
  const auto single = run(folder, "single", 0, {"train", "lbfgs", "passes=5", "batch=72", "lr=1"});
  ASSERT_EQ(count_passes(single[0]), 5) << single[0];
  EXPECT_EQ(ranks[1], ranks[0]) << "rank 1 differs";
  expect_close(ranks[0], single[0], 1e-10, "L-BFGS on 2 ranks");
}

// A c10d group made by the program and handed in trains as torchrun's does, bit for bit.
TEST(Distributed, AProcessGroupOfYourOwnTrainsAsTorchrunsDoes) {
  TemporaryFolder folder("dist_own");
  const auto torchruns = run(folder, "torchruns", 2, {"train", "adam", "passes=2"});
  const auto own = run(folder, "own", 2, {"train", "adam", "passes=2", "own_group=1"});
  EXPECT_EQ(count_passes(own[0]), 2) << own[0];
  EXPECT_EQ(own[0], torchruns[0]);
  EXPECT_EQ(own[1], torchruns[1]);
}

TEST(Distributed, EarlyStoppingStopsEveryRankAtTheSamePass) {
  TemporaryFolder folder("dist_patience");
  // Validation targets shifted by 2: as training fits the training targets, the validation
  // loss turns up, and patience 1 ends the run long before 40 passes.
  const std::vector<std::string> args{"train",      "adam",          "passes=40",
                                      "patience=1", "valid_shift=2", "lr=0.2"};
  const auto ranks = run(folder, "ranks", 2, with_batch(args, 4));
  const auto single = run(folder, "single", 0, with_batch(args, 8));
  EXPECT_NE(single[0].find("stop patience"), std::string::npos) << single[0];
  EXPECT_LT(count_passes(single[0]), 40);
  EXPECT_EQ(ranks[1], ranks[0]);
  EXPECT_EQ(count_passes(ranks[0]), count_passes(single[0]));
  expect_close(ranks[0], single[0], 1e-12, "patience");
}

TEST(Distributed, RankZerosCheckpointResumesTheGroupBitForBit) {
  TemporaryFolder folder("dist_resume");
  const std::string checkpoint = folder.file("run.ckpt");
  const auto straight = run(folder, "straight", 2, {"train", "adam", "passes=4"});
  const auto first =
      run(folder, "first", 2, {"train", "adam", "passes=2", "checkpoint=" + checkpoint});
  ASSERT_TRUE(std::filesystem::exists(checkpoint));
  EXPECT_EQ(count_passes(first[0]), 2);
  const auto resumed = run(folder, "resumed", 2,
                           {"train", "adam", "passes=4", "checkpoint=" + checkpoint, "resume=1"});
  EXPECT_EQ(count_passes(resumed[0]), 2) << resumed[0];  // passes 3 and 4
  EXPECT_EQ(resumed[1], resumed[0]);
  // The final parameters (the last two lines) equal the straight run's, bit for bit.
  auto tail = [](const std::string& text) {
    const auto summary = text.rfind("stop ");
    return text.substr(text.find('\n', summary) + 1);
  };
  EXPECT_EQ(tail(resumed[0]), tail(straight[0]));
  EXPECT_EQ(numbers(tail(straight[0])).size(), 18u);
}

TEST(Distributed, ACallbacksStopOnOneRankStopsEveryRankAtTheSamePass) {
  TemporaryFolder folder("dist_callback");
  const auto ranks =
      run(folder, "ranks", 2, {"train", "sgd", "passes=10", "stop_at=2", "stop_rank=1"});
  EXPECT_EQ(count_passes(ranks[0]), 2) << ranks[0];
  EXPECT_EQ(count_passes(ranks[1]), 2) << ranks[1];
  EXPECT_NE(ranks[0].find("stop callback passes 2"), std::string::npos) << ranks[0];
  EXPECT_NE(ranks[0].find("detail asked on another rank"), std::string::npos) << ranks[0];
  EXPECT_NE(ranks[1].find("detail pass 2 on this rank"), std::string::npos) << ranks[1];
  // The same parameters on both ranks: the last two lines, after the summary.
  auto tail = [](const std::string& text) {
    const auto summary = text.rfind("stop ");
    return text.substr(text.find('\n', text.find('\n', summary) + 1) + 1);
  };
  EXPECT_EQ(tail(ranks[0]), tail(ranks[1]));
}

TEST(Distributed, ANonFiniteLossOnOneRankSkipsTheUpdateOnEveryRank) {
  TemporaryFolder folder("dist_nan");
  const auto ranks = run(folder, "ranks", 2, {"train", "sgd", "passes=2", "nan_at=3"});
  EXPECT_EQ(ranks[1], ranks[0]);
  // 18 slices / 2 ranks = 9 steps per pass, one of 18 skipped.
  EXPECT_NE(ranks[0].find("updates 17"), std::string::npos) << ranks[0];
}

TEST(Distributed, LinesOfRanksOtherThan0SayTheirRank) {
  TemporaryFolder folder("dist_rank_lines");
  const int port = free_port();
  std::vector<Rank> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.push_back(
        start(folder, "ranks", r, 2, port, {"train", "sgd", "passes=1", "nan_at=3", "log=warn"}));
  }
  ASSERT_TRUE(wait_all(ranks, std::chrono::seconds(90)));
  // Both ranks warn of the skipped update; rank 1's line says whose it is, rank 0's does not.
  const auto zero = read_file(ranks[0].log), one = read_file(ranks[1].log);
  EXPECT_NE(one.find(" [rank 1] SGD: non-finite loss on 1 of 2 ranks"), std::string::npos) << one;
  EXPECT_NE(zero.find("SGD: non-finite loss on 1 of 2 ranks"), std::string::npos) << zero;
  EXPECT_EQ(zero.find("[rank"), std::string::npos) << zero;
}

TEST(Distributed, MismatchedParametersAreAClearErrorOnEveryRank) {
  TemporaryFolder folder("dist_mismatch");
  const auto ranks = run(folder, "ranks", 2, {"train", "sgd", "shape=odd"}, 3);
  for (const auto& result : ranks) {
    EXPECT_NE(result.find("error: downhill: distributed: the ranks' optimizers differ: rank 0 has "
                          "'parameter 'w' [5, 3] Double on cpu, group 0'"),
              std::string::npos)
        << result;
    EXPECT_NE(result.find("rank 1 has 'parameter 'w' [3, 5] Double on cpu, group 0'; every rank "
                          "must build the same "
                          "optimizer"),
              std::string::npos)
        << result;
  }
}

TEST(Distributed, ARangeOfEachRanksShareTrainsAsTheShardedTensorDatasetAndUnequalOnesStop) {
  TemporaryFolder folder("dist_range");
  // Each rank's range holds batches rank, rank + 2, ...: the batches the loop gives that rank
  // of the tensor dataset; so the two runs are one, to the bit.
  const auto tensors = run(folder, "tensors", 2, {"train", "sgd", "momentum=0.5"});
  const auto ranges = run(folder, "ranges", 2, {"train", "sgd", "momentum=0.5", "range=1"});
  EXPECT_EQ(ranges, tensors);
  // Rank 1's range is a batch short: its pass ends while rank 0 still averages gradients, and
  // both ranks stop with the error naming both operations, not a hang.
  const auto unequal = run(folder, "unequal", 2, {"train", "sgd", "range=1", "range_short=1"}, 3);
  for (const auto& result : unequal) {
    EXPECT_NE(result.find("the ranks are out of step"), std::string::npos) << result;
  }
}

TEST(Distributed, RanksWhoseSchedulesDifferStopWithTheSameErrorBeforeTheFirstUpdate) {
  TemporaryFolder folder("dist_schedule");
  const auto ranks = run(folder, "ranks", 2, {"train", "sgd", "schedule0=1", "schedule1=0.5"}, 3);
  for (const auto& result : ranks) {
    // At the first update, before anything is sent.
    EXPECT_NE(result.find("downhill: SGD pass 1, batch 1: distributed: the ranks disagree on "
                          "learning_rate_schedule(0): 0.5 on some ranks, 1 on others; "),
              std::string::npos)
        << result;
  }
  EXPECT_EQ(ranks[0], ranks[1]) << "the same error on every rank";
  // Schedules that are different functions with the same values train as one.
  const auto same = run(folder, "same", 2, {"train", "sgd", "schedule0=0.5", "schedule1=0.5"});
  EXPECT_EQ(same[0], same[1]);
  EXPECT_NE(same[0].find("stop "), std::string::npos) << same[0];
}

TEST(Distributed, ARankOutOfStepGetsAnErrorNamingBothOperationsNeverAnAbort) {
  TemporaryFolder folder("dist_out_of_step");
  // Rank 1 leaves the loop after pass 1 and calls step() alone; rank 0 goes on with the loop,
  // whose next collective is of another operation and size.
  const auto ranks = run(folder, "ranks", 2,
                         {"train", "sgd", "passes=50", "leave_at=1", "then=step", "timeout=10"}, 3);
  EXPECT_NE(ranks[1].find("error: downhill: distributed: the ranks are out of step: rank 1 of 2 "
                          "is averaging gradients (20 values) while another rank is "),
            std::string::npos)
      << ranks[1];
  EXPECT_NE(ranks[0].find("error: downhill: distributed: the ranks are out of step: rank 0 of 2 "
                          "is "),
            std::string::npos)
      << ranks[0];
  EXPECT_NE(ranks[0].find(" while another rank is averaging gradients (20 values); every rank "
                          "must make the same calls in the same order"),
            std::string::npos)
      << ranks[0];
}

TEST(Distributed, ARankThatDiesGivesTheOthersAnErrorWithinTheTimeout) {
  TemporaryFolder folder("dist_die");
  const int port = free_port();
  std::vector<Rank> ranks;
  const std::vector<std::string> args{"train", "sgd", "passes=50", "die_at=2", "timeout=5"};
  const auto started = Clock::now();
  for (int r = 0; r < 3; ++r) ranks.push_back(start(folder, "ranks", r, 3, port, args));
  ASSERT_TRUE(wait_all(ranks, std::chrono::seconds(60)));
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_EQ(exit_code(ranks[1]), 9);
  for (int r : {0, 2}) {
    EXPECT_EQ(exit_code(ranks[r]), 3) << read_file(ranks[r].log);
    const auto result = read_file(ranks[r].out);
    // Whichever collective it was in when rank 1 died.
    EXPECT_NE(result.find("error: downhill: distributed: rank " + std::to_string(r) + " of 3: "),
              std::string::npos)
        << result;
    EXPECT_NE(result.find(" failed — a rank died, left the loop, or took longer than "
                          "distributed_timeout = 5 s: "),
              std::string::npos)
        << result;
  }
  EXPECT_LT(seconds, 5 + 20) << "no rank may hang past the timeout";
  std::cout << "[ timing ] the surviving ranks failed " << seconds << " s after the start\n";
}

TEST(Distributed, ARankThatHangsGivesTheOthersAnErrorAfterTheTimeout) {
  TemporaryFolder folder("dist_hang");
  const int port = free_port();
  std::vector<Rank> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.push_back(start(folder, "ranks", r, 2, port,
                          {"train", "sgd", "passes=50", "hang_at=1", "timeout=3"}));
  }
  // Rank 0 must fail by itself; rank 1, asleep, is stopped afterwards.
  std::vector<Rank> zero{ranks[0]};
  const auto started = Clock::now();
  ASSERT_TRUE(wait_all(zero, std::chrono::seconds(60)));
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  kill(ranks[1].pid, SIGKILL);
  waitpid(ranks[1].pid, &ranks[1].status, 0);
  EXPECT_EQ(exit_code(zero[0]), 3) << read_file(zero[0].log);
  const auto result = read_file(zero[0].out);
  EXPECT_NE(result.find("error: downhill: distributed: rank 0 of 2: "), std::string::npos)
      << result;
  EXPECT_NE(result.find("took longer than distributed_timeout = 3 s: "), std::string::npos)
      << result;
  EXPECT_GE(seconds, 3.0);
  EXPECT_LT(seconds, 3 + 20);
  std::cout << "[ timing ] rank 0 failed " << seconds << " s after the start\n";
}

TEST(Distributed, ARankThatNeverJoinsIsAnErrorWithinTheTimeout) {
  TemporaryFolder folder("dist_alone");
  const int port = free_port();
  std::vector<Rank> ranks{start(folder, "alone", 0, 2, port, {"train", "sgd", "timeout=3"})};
  const auto started = Clock::now();
  ASSERT_TRUE(wait_all(ranks, std::chrono::seconds(60)));
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_EQ(exit_code(ranks[0]), 3);
  const auto result = read_file(ranks[0].out);
  EXPECT_NE(result.find("error: downhill: distributed: rank 0 of 2 could not join the group at "
                        "127.0.0.1:" +
                        std::to_string(port) + " within distributed_timeout = 3 s"),
            std::string::npos)
      << result;
  EXPECT_GE(seconds, 2.5);
  EXPECT_LT(seconds, 3 + 20);
  std::cout << "[ timing ] the lone rank failed " << seconds << " s after its start\n";
}

// The step limit is decided from update_count(), which the ranks agree on at each update: every
// rank stops after the same update, inside a pass, as one process with the global batch does.
TEST(Distributed, MaxStepsStopsEveryRankAfterTheSameUpdate) {
  TemporaryFolder folder("dist_max_steps");
  // 18 slices of 4 samples over 2 ranks: 9 steps a pass; 13 updates end 4 steps into pass 2.
  const std::vector<std::string> args{"train", "adam", "passes=5", "max_steps=13"};
  const auto ranks = run(folder, "ranks", 2, with_batch(args, 4));
  const auto single = run(folder, "single", 0, with_batch(args, 8));
  EXPECT_EQ(ranks[1], ranks[0]);
  EXPECT_EQ(count_passes(ranks[0]), 1) << ranks[0];
  EXPECT_NE(ranks[0].find("stop max_steps passes 1 "), std::string::npos) << ranks[0];
  EXPECT_NE(ranks[0].find(" updates 13\n"), std::string::npos) << ranks[0];
  expect_close(ranks[0], single[0], 1e-12, "max_steps");
}

TEST(Distributed, CtrlCOnOneRankStopsEveryRankAtTheSameStep) {
  TemporaryFolder folder("dist_interrupt");
  const int port = free_port();
  std::vector<Rank> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.push_back(start(folder, "ranks", r, 2, port, {"train", "sgd", "passes=100000"}));
  }
  // Once rank 1 has finished a pass, Ctrl-C reaches it alone.
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (read_file(ranks[1].log).find("pass 2") == std::string::npos && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(ranks[1].pid, SIGINT);
  ASSERT_TRUE(wait_all(ranks, std::chrono::seconds(60)));
  const auto zero = read_file(ranks[0].out), one = read_file(ranks[1].out);
  EXPECT_EQ(exit_code(ranks[0]), 0) << read_file(ranks[0].log);
  EXPECT_EQ(exit_code(ranks[1]), 0) << read_file(ranks[1].log);
  EXPECT_NE(zero.find("stop interrupted"), std::string::npos) << zero;
  EXPECT_EQ(zero, one);
}

// The test process itself, as a group of one: RANK 0 of WORLD_SIZE 1.
class EnvironmentVariables {
 public:
  explicit EnvironmentVariables(std::vector<std::pair<std::string, std::string>> values) {
    for (const auto& [name, value] : values) {
      const char* old = std::getenv(name.c_str());
      saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      if (value.empty()) {
        unsetenv(name.c_str());
      } else {
        setenv(name.c_str(), value.c_str(), 1);
      }
    }
  }
  ~EnvironmentVariables() {
    for (const auto& [name, value] : saved_) {
      if (value) {
        setenv(name.c_str(), value->c_str(), 1);
      } else {
        unsetenv(name.c_str());
      }
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(Distributed, WithoutTorchrunsVariablesTheErrorNamesThem) {
  EnvironmentVariables unset(
      {{"RANK", ""}, {"WORLD_SIZE", ""}, {"MASTER_ADDR", ""}, {"MASTER_PORT", "29500"}});
  auto w = torch::zeros({2}, torch::requires_grad());
  const auto message = downhill::testing::message_of<std::runtime_error>(
      [&] { downhill::build("sgd", {w}, downhill::Options().distributed(true)); });
  EXPECT_NE(message.find("distributed(true) needs the environment torchrun gives each process; "
                         "RANK, WORLD_SIZE, MASTER_ADDR are not set"),
            std::string::npos)
      << message;
  EXPECT_EQ(downhill::torchrun_place().rank, 0);
  EXPECT_EQ(downhill::torchrun_place().world_size, 1);
}

TEST(Distributed, AGroupOfOneIsAPlainRun) {
  EnvironmentVariables env({{"RANK", "0"},
                            {"WORLD_SIZE", "1"},
                            {"MASTER_ADDR", "127.0.0.1"},
                            {"MASTER_PORT", std::to_string(free_port())}});
  auto run_once = [](bool distributed) {
    torch::manual_seed(3);
    auto w = torch::randn({4, 2}, torch::dtype(torch::kDouble)).requires_grad_();
    auto x = torch::randn({40, 4}, torch::dtype(torch::kDouble));
    auto y = torch::randn({40, 2}, torch::dtype(torch::kDouble));
    downhill::Loss loss = [&](const downhill::Batch& b) -> downhill::Evaluation {
      return (b[0].matmul(w) - b[1]).pow(2).mean();
    };
    auto opt = downhill::build(
        "adam", loss, {{"w", w}},
        downhill::Options().learning_rate(0.01).max_updates(3).distributed(distributed));
    EXPECT_EQ(opt->place().rank, 0);
    EXPECT_EQ(opt->place().world_size, 1);
    downhill::Dataset train({x, y}, downhill::DatasetOptions().batch_size(8));
    opt->minimize(train);
    return w.detach().clone();
  };
  const downhill::testing::ScopedLogLevel quiet(spdlog::level::off);
  const auto plain = run_once(false);
  const auto grouped = run_once(true);
  EXPECT_TRUE(torch::equal(plain, grouped));
}

// Sharding by hand: 5 slices, 2 ranks — rank r's k-th batch is slice k·2 + r of the order,
// which (unshuffled) runs 0..4 then again; each pass is ⌈5 / 2⌉ = 3 batches.
TEST(Distributed, ShardingTakesEveryWorldthSliceOfTheCommonOrder) {
  auto x = torch::arange(10, torch::dtype(torch::kDouble));
  for (int rank = 0; rank < 2; ++rank) {
    downhill::Dataset data({x}, downhill::DatasetOptions().batch_size(2).shuffle(false));
    data.shard(rank, 2);
    EXPECT_EQ(data.iteration_size(), 3);
    EXPECT_EQ(data.shard_rank(), rank);
    EXPECT_EQ(data.shard_count(), 2);
    // Global positions rank, rank+2, rank+4, ... over slices 0..4 repeating.
    std::vector<double> firsts;
    for (int k = 0; k < 5; ++k) firsts.push_back(data.next()[0][0].item<double>());
    const std::vector<double> expected =
        rank == 0 ? std::vector<double>{0, 4, 8, 2, 6} : std::vector<double>{2, 6, 0, 4, 8};
    EXPECT_EQ(firsts, expected) << "rank " << rank;
  }
  downhill::Dataset data({x}, downhill::DatasetOptions().batch_size(2).iteration_size(7));
  data.shard(1, 3);
  EXPECT_EQ(data.iteration_size(), 7) << "an iteration_size that was set stays";
  data.shard(0, 1);
  EXPECT_EQ(data.shard_count(), 1);
  const auto message =
      downhill::testing::message_of<std::invalid_argument>([&] { data.shard(2, 2); });
  EXPECT_EQ(message,
            "downhill: dataset 'data': shard(2, 2) is invalid; allowed: world_size >= 1 and 0 <= "
            "rank < world_size");
}

}  // namespace
