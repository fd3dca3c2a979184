// Checkpoints: a resumed run is the same run continued, bit for bit; a killed
// writer never leaves a torn file; a checkpoint of another problem is refused (issue 5).
#include <ATen/CPUGeneratorImpl.h>
#include <downhill/downhill.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint_problem.h"

extern char** environ;

namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// A folder of its own under the system's temporary folder, removed afterwards.
class TemporaryFolder {
 public:
  explicit TemporaryFolder(const std::string& label)
      : path_(std::filesystem::temp_directory_path() /
              ("downhill_" + label + "_" + std::to_string(getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TemporaryFolder() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

class Quiet : public ::testing::Test {
 protected:
  void SetUp() override { downhill::logger()->set_level(spdlog::level::off); }
  void TearDown() override { downhill::logger()->set_level(spdlog::level::info); }
};

// --- (1) 20 passes straight == 10 passes, checkpoint, fresh optimizer, 10 more ---

// Linear regression with a short last batch; the data are fixed, drawn from their
// own generator so that the global one is left to the datasets and ESGD's probes.
struct RegressionData {
  torch::Tensor x_train, y_train, x_valid, y_valid;
  RegressionData() {
    auto generator = at::detail::createCPUGenerator(1234);
    auto truth = torch::randn({5, 3}, generator);
    x_train = torch::randn({36, 5}, generator);
    y_train = x_train.mm(truth) + 0.1 * torch::randn({36, 3}, generator);
    x_valid = torch::randn({20, 5}, generator);
    y_valid = x_valid.mm(truth) + 0.1 * torch::randn({20, 3}, generator);
  }
};

struct RunRecord {
  std::vector<downhill::Monitors> training, validation;
  std::vector<std::vector<torch::Tensor>> params_after_pass;
  std::vector<torch::Tensor> final_params;
};

// One run of `algo` on fresh parameters (all `initial`) and fresh datasets made
// after torch::manual_seed(seed); the datasets shuffle with the global generator.
RunRecord run_regression(const RegressionData& data, const std::string& algo, double initial,
                         uint64_t seed, downhill::Options options,
                         const std::function<void(downhill::Optimizer&)>& before_run = {}) {
  torch::manual_seed(seed);
  auto w = torch::full({5, 3}, initial, torch::requires_grad());
  auto b = torch::full({3}, initial, torch::requires_grad());
  downhill::Dataset train({data.x_train, data.y_train},
                          downhill::DatasetOptions().batch_size(8).name("train"));
  // Three slices, two per validation: positions and reshuffles carry across validations.
  downhill::Dataset valid({data.x_valid, data.y_valid},
                          downhill::DatasetOptions().batch_size(8).iteration_size(2).name("valid"));
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    auto err = batch[0].mm(w) + b - batch[1];
    return {err.square().mean() + 1e-3 * w.square().sum(), {{"abs_err", err.abs().mean()}}};
  };
  auto opt = downhill::build(
      algo, loss, {{"w", w}, {"b", b}},
      options.learning_rate(0.05).momentum(0.5).validate_every(3).patience(100).monitor_gradients(
          true));
  if (before_run) before_run(*opt);
  RunRecord run;
  for (const auto& [training, validation] : opt->iterate(train, &valid)) {
    run.training.push_back(training);
    run.validation.push_back(validation);
    run.params_after_pass.push_back({w.detach().clone(), b.detach().clone()});
  }
  run.final_params = {w.detach().clone(), b.detach().clone()};
  return run;
}

void expect_identical(const downhill::Monitors& expected, const downhill::Monitors& actual,
                      const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  auto e = expected.begin();
  for (auto a = actual.begin(); a != actual.end(); ++a, ++e) {
    EXPECT_EQ(e->first, a->first) << what;
    EXPECT_EQ(e->second, a->second) << what << " " << a->first;
  }
}

void expect_identical(const std::vector<torch::Tensor>& expected,
                      const std::vector<torch::Tensor>& actual, const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_TRUE(torch::equal(expected[i], actual[i])) << what << " tensor " << i;
  }
}

class ResumeBitIdentical : public Quiet, public ::testing::WithParamInterface<const char*> {};

TEST_P(ResumeBitIdentical, TenPassesCheckpointFreshOptimizerTenMoreEqualsTwentyStraight) {
  const std::string algo = GetParam();
  const RegressionData data;
  TemporaryFolder folder("resume_" + algo);
  const auto path = folder.file("run.ckpt");

  const RunRecord straight =
      run_regression(data, algo, 0.1, 42, downhill::Options().max_updates(20));
  ASSERT_EQ(straight.training.size(), 20u);

  const RunRecord first =
      run_regression(data, algo, 0.1, 42, downhill::Options().max_updates(10).checkpoint(path));
  ASSERT_EQ(first.training.size(), 10u);
  ASSERT_TRUE(std::filesystem::exists(path));
  for (size_t pass = 0; pass < 10; ++pass) {
    expect_identical(straight.training[pass], first.training[pass], "first half, training");
  }

  // Another seed, other initial values: everything must come from the checkpoint.
  const RunRecord resumed = run_regression(
      data, algo, -0.7, 7, downhill::Options().max_updates(20).checkpoint(path).resume(true));
  ASSERT_EQ(resumed.training.size(), 10u);
  for (size_t k = 0; k < 10; ++k) {
    const std::string pass = "pass " + std::to_string(k + 11);
    expect_identical(straight.training[k + 10], resumed.training[k], pass + " training");
    expect_identical(straight.validation[k + 10], resumed.validation[k], pass + " validation");
    expect_identical(straight.params_after_pass[k + 10], resumed.params_after_pass[k],
                     pass + " parameters");
  }
  // After the run, both restored the same best parameters.
  expect_identical(straight.final_params, resumed.final_params, "after the run");
  // The resumed run had something to do: its passes changed the parameters.
  EXPECT_FALSE(
      torch::equal(first.params_after_pass.back()[0], resumed.params_after_pass.back()[0]));
}

INSTANTIATE_TEST_SUITE_P(EveryAlgorithm, ResumeBitIdentical,
                         ::testing::Values("sgd", "nag", "rprop", "rmsprop", "adagrad", "adadelta",
                                           "esgd", "adam"));

TEST_F(Quiet, ResumeWithoutACheckpointFileStartsAFreshRun) {
  const RegressionData data;
  TemporaryFolder folder("fresh");
  const auto path = folder.file("absent.ckpt");
  const RunRecord plain = run_regression(data, "adam", 0.1, 5, downhill::Options().max_updates(4));
  const RunRecord with_resume = run_regression(
      data, "adam", 0.1, 5, downhill::Options().max_updates(4).checkpoint(path).resume(true));
  ASSERT_EQ(with_resume.training.size(), 4u);
  expect_identical(plain.final_params, with_resume.final_params, "final");
  EXPECT_TRUE(std::filesystem::exists(path));  // and it checkpoints as it goes
}

TEST_F(Quiet, ExplicitLoadCheckpointContinuesTheRunToo) {
  const RegressionData data;
  TemporaryFolder folder("explicit");
  const auto path = folder.file("run.ckpt");
  const RunRecord straight =
      run_regression(data, "esgd", 0.1, 42, downhill::Options().max_updates(8));
  run_regression(data, "esgd", 0.1, 42, downhill::Options().max_updates(4).checkpoint(path));
  const RunRecord resumed =
      run_regression(data, "esgd", 2.0, 99, downhill::Options().max_updates(8),
                     [&](downhill::Optimizer& opt) { opt.load_checkpoint(path); });
  ASSERT_EQ(resumed.training.size(), 4u);
  for (size_t k = 0; k < 4; ++k) {
    expect_identical(straight.training[k + 4], resumed.training[k], "training");
    expect_identical(straight.params_after_pass[k + 4], resumed.params_after_pass[k], "params");
  }
  expect_identical(straight.final_params, resumed.final_params, "after the run");
}

// --- (2) SIGKILL while checkpointing never leaves a torn file ---

struct Writer {
  pid_t pid = -1;
  int output = -1;  // read end of the child's stdout
};

Writer spawn_writer(const std::string& path, long long first_counter) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  const std::string program = DOWNHILL_CHECKPOINT_WRITER;
  const std::string counter = std::to_string(first_counter);
  char* argv[] = {const_cast<char*>(program.c_str()), const_cast<char*>(path.c_str()),
                  const_cast<char*>(counter.c_str()), nullptr};
  Writer writer;
  const int rc = posix_spawn(&writer.pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) throw std::runtime_error("cannot start " + program);
  writer.output = fds[0];
  return writer;
}

// Reads the child's output until `done(text)` holds or the pipe closes.
std::string read_until(int fd, std::string text,
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

// The counters the child reported as completely written, in order.
std::vector<long long> completed_counters(const std::string& output) {
  std::istringstream lines(output);
  std::vector<long long> out;
  for (std::string line; std::getline(lines, line);) {
    if (line == "ready" || line.empty()) continue;
    out.push_back(std::stoll(line));
  }
  return out;
}

// Loads `path` and returns the counter it holds, checking that every element of
// the parameter and of every state tensor holds that same counter.
long long load_counter(const std::string& path) {
  auto w = torch::zeros({kill_test::kElements});
  auto opt = kill_test::make_optimizer(w);
  opt->load_checkpoint(path);
  const double counter = w[0].item<double>();
  EXPECT_TRUE(torch::equal(w, torch::full_like(w, counter))) << "torn parameter";
  for (const auto& [name, tensor] : opt->state()) {
    EXPECT_TRUE(torch::equal(tensor, torch::full_like(tensor, counter))) << "torn " << name;
  }
  return static_cast<long long>(counter);
}

TEST_F(Quiet, KilledWhileCheckpointingTheFileOnDiskAlwaysLoadsAndIsOneThatWasWritten) {
  TemporaryFolder folder("kill");
  const auto path = folder.file("loop.ckpt");
  {  // Counter 0, written here, so that a file exists before the first kill.
    auto w = torch::zeros({kill_test::kElements});
    kill_test::make_optimizer(w)->save_checkpoint(path);
  }
  std::mt19937 random(20240531);
  std::uniform_int_distribution<int> sleep_us(0, 20000);
  constexpr int kKills = 50;
  long long on_disk = 0;
  int kills = 0, writes_completed = 0, after_rename = 0, mid_write = 0;
  for (int round = 0; round < kKills; ++round) {
    SCOPED_TRACE("kill " + std::to_string(round + 1));
    const long long first = on_disk + 1;
    Writer writer = spawn_writer(path, first);
    // Wait until the child has written one checkpoint (so that it is in its loop,
    // past start-up), then kill it at a random moment of the writes that follow.
    std::string output = read_until(writer.output, "", [](const std::string& text) {
      const auto ready = text.find("ready\n");
      return ready != std::string::npos && text.find('\n', ready + 6) != std::string::npos;
    });
    ASSERT_FALSE(completed_counters(output).empty()) << "the writer did not start: " << output;
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us(random)));
    ASSERT_EQ(kill(writer.pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(writer.pid, &status, 0), writer.pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
    ++kills;
    output = read_until(writer.output, output, [](const std::string&) { return false; });
    close(writer.output);

    // Either the last write the child finished, or the one it was in (renamed
    // but not yet reported); the file before this child when it finished none.
    const auto completed = completed_counters(output);
    const long long newest_complete = completed.empty() ? on_disk : completed.back();
    const long long in_progress = completed.empty() ? first : completed.back() + 1;
    long long loaded = -1;
    ASSERT_NO_THROW(loaded = load_counter(path));
    EXPECT_TRUE(loaded == newest_complete || loaded == in_progress)
        << "loaded " << loaded << ", expected " << newest_complete << " or " << in_progress;
    writes_completed += static_cast<int>(completed.size());
    if (loaded == in_progress) ++after_rename;  // killed between the rename and its report
    // A killed write leaves its temporary file; count and clear it for the next round.
    for (const auto& entry : std::filesystem::directory_iterator(folder.path())) {
      if (entry.path().string() != path) {
        ++mid_write;
        std::filesystem::remove(entry.path());
      }
    }
    on_disk = loaded;
  }
  EXPECT_EQ(kills, kKills);
  std::cout << "[ kill test ] " << kills << " SIGKILLs, the checkpoint loaded intact every time; "
            << writes_completed << " writes completed in all; " << mid_write
            << " kills left a partial temporary file, " << after_rename
            << " landed between a rename and its report; final counter " << on_disk << "\n";
  RecordProperty("kills", kills);
  RecordProperty("final_counter", static_cast<int>(on_disk));
}

// --- (3) a checkpoint of another problem is refused, nothing changed ---

struct Target {
  std::string label;
  std::string algo;
  std::vector<std::pair<std::string, torch::Tensor>> params;
  double momentum;
  std::vector<std::string> message_parts;
};

std::vector<torch::Tensor> snapshot(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.detach().clone());
  return out;
}

std::vector<torch::Tensor> state_of(downhill::Optimizer& opt) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, tensor] : opt.state()) out.push_back(tensor.detach().clone());
  return out;
}

torch::Tensor global_rng_state() { return at::detail::getDefaultCPUGenerator().get_state(); }

TEST_F(Quiet, CheckpointOfAnotherProblemIsRefusedNamingTheMismatchAndChangesNothing) {
  TemporaryFolder folder("mismatch");
  const auto path = folder.file("problem_a.ckpt");
  {
    auto w = torch::ones({5, 3});
    auto b = torch::ones({3});
    auto writer = downhill::build("sgd", {{"w", w}, {"b", b}}, downhill::Options().momentum(0.5));
    writer->apply({torch::full({5, 3}, 0.5), torch::full({3}, 0.5)});
    writer->save_checkpoint(path);
  }
  auto make = [](std::vector<int64_t> shape, torch::Dtype dtype = torch::kFloat) {
    return torch::full(shape, 2.0, torch::TensorOptions().dtype(dtype));
  };
  const std::vector<Target> targets = {
      {"other names",
       "sgd",
       {{"weights", make({5, 3})}, {"b", make({3})}},
       0.5,
       {"'w'", "'weights'"}},
      {"other shape",
       "sgd",
       {{"w", make({3, 5})}, {"b", make({3})}},
       0.5,
       {"'w'", "[5, 3]", "[3, 5]"}},
      {"other dtype",
       "sgd",
       {{"w", make({5, 3})}, {"b", make({3}, torch::kDouble)}},
       0.5,
       {"'b'", "Float", "Double"}},
      {"other algorithm", "adam", {{"w", make({5, 3})}, {"b", make({3})}}, 0.5, {"SGD", "Adam"}},
      {"momentum off",
       "sgd",
       {{"w", make({5, 3})}, {"b", make({3})}},
       0.0,
       {"momentum", "on", "off"}},
      {"fewer parameters", "sgd", {{"w", make({5, 3})}}, 0.5, {"2 parameters", "has 1"}},
  };
  for (const auto& target : targets) {
    SCOPED_TRACE(target.label);
    std::vector<torch::Tensor> tensors, grads;
    downhill::Params params(target.params);
    for (const auto& [name, tensor] : target.params) {
      tensors.push_back(tensor);
      grads.push_back(torch::full_like(tensor, 0.25));
    }
    auto opt = downhill::build(target.algo, params,
                               downhill::Options().momentum(target.momentum).learning_rate(0.1));
    ASSERT_TRUE(opt->apply(grads));
    const auto params_before = snapshot(tensors);
    const auto state_before = state_of(*opt);
    const auto rng_before = global_rng_state();
    torch::randn({3});  // the global generator moves on; loading must not rewind it
    const auto rng_expected = global_rng_state();
    ASSERT_FALSE(torch::equal(rng_before, rng_expected));
    try {
      opt->load_checkpoint(path);
      ADD_FAILURE() << "accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(std::string(e.what()), HasSubstr("another problem"));
      for (const auto& part : target.message_parts) {
        EXPECT_THAT(std::string(e.what()), HasSubstr(part));
      }
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      EXPECT_TRUE(torch::equal(tensors[i], params_before[i])) << "parameter " << i;
    }
    const auto state_after = state_of(*opt);
    ASSERT_EQ(state_after.size(), state_before.size());
    for (size_t i = 0; i < state_after.size(); ++i) {
      EXPECT_TRUE(torch::equal(state_after[i], state_before[i])) << "state " << i;
    }
    EXPECT_EQ(opt->update_count(), 1);
    EXPECT_TRUE(torch::equal(global_rng_state(), rng_expected));
  }
}

TEST_F(Quiet, TemporaryFilesOfKilledWritersAreRemovedByTheNextWrite) {
  TemporaryFolder folder("abandoned");
  const auto path = folder.file("run.ckpt");
  // A process that has exited: its pid names no live process any more.
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  const auto abandoned = path + ".tmp." + std::to_string(child);
  const auto live = path + ".tmp." + std::to_string(getppid());  // a writer still running
  const auto unrelated = folder.file("other.ckpt.tmp.1");
  for (const auto& file : {abandoned, live, unrelated}) std::ofstream(file) << "partial";

  auto w = torch::ones({3});
  downhill::build("sgd", {{"w", w}}, downhill::Options())->save_checkpoint(path);

  EXPECT_FALSE(std::filesystem::exists(abandoned));
  EXPECT_TRUE(std::filesystem::exists(live));
  EXPECT_TRUE(std::filesystem::exists(unrelated));
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST_F(Quiet, UnreadableOrTruncatedCheckpointIsARuntimeErrorNamingThePath) {
  TemporaryFolder folder("unreadable");
  const auto good = folder.file("good.ckpt");
  auto w = torch::ones({4});
  auto opt = downhill::build("rmsprop", {{"w", w}}, downhill::Options());
  opt->save_checkpoint(good);

  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto truncated = folder.file("truncated.ckpt");
  std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  const auto garbage = folder.file("garbage.ckpt");
  std::ofstream(garbage, std::ios::binary) << "not a checkpoint at all";

  auto x = torch::full({4}, 3.0);
  auto target = downhill::build("rmsprop", {{"w", x}}, downhill::Options());
  for (const auto& path : {truncated, garbage, folder.file("missing.ckpt")}) {
    SCOPED_TRACE(path);
    try {
      target->load_checkpoint(path);
      ADD_FAILURE() << "accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_THAT(std::string(e.what()), AllOf(HasSubstr("checkpoint"), HasSubstr(path)));
    }
    EXPECT_TRUE(torch::equal(x, torch::full({4}, 3.0)));
  }
  target->load_checkpoint(good);  // and the good one does load
  EXPECT_TRUE(torch::equal(x, torch::ones({4})));
}

TEST_F(Quiet, CheckpointIsWrittenEveryNPassesAndWhenTheLoopStops) {
  TemporaryFolder folder("every");
  const auto path = folder.file("every.ckpt");
  auto w = torch::ones({2}, torch::requires_grad());
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation { return (w * w).sum(); };
  auto opt = downhill::build(
      "sgd", loss, {{"w", w}},
      downhill::Options().learning_rate(0.1).max_updates(5).checkpoint(path).checkpoint_every(3));
  downhill::Dataset data(downhill::Batch{});
  std::vector<bool> exists_after_pass;
  for (const auto& item : opt->iterate(data)) {
    (void)item;
    exists_after_pass.push_back(std::filesystem::exists(path));
  }
  EXPECT_EQ(exists_after_pass, (std::vector<bool>{false, false, true, true, true}));
  // The final checkpoint is of the run after pass 5: w = 0.8^5 before restoring the best.
  auto x = torch::zeros({2});
  auto reader = downhill::build("sgd", {{"w", x}}, downhill::Options());
  reader->load_checkpoint(path);
  EXPECT_TRUE(torch::allclose(x, torch::full({2}, std::pow(0.8, 5))));
  // No temporary files are left beside it.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder.path())) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

}  // namespace
