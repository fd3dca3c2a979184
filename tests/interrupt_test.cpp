// Ctrl-C during the loop: the current batch finishes, the best parameters are
// put back, the call returns normally, and the previous SIGINT handler is back.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <csignal>
#include <vector>

namespace {

class QuietLogs : public ::testing::Environment {
 public:
  void SetUp() override { downhill::logger()->set_level(spdlog::level::off); }
};
[[maybe_unused]] const auto* const kQuietLogs = ::testing::AddGlobalTestEnvironment(new QuietLogs);

volatile std::sig_atomic_t custom_handler_calls = 0;
extern "C" void count_sigint(int) { custom_handler_calls = custom_handler_calls + 1; }

// Installs count_sigint as the SIGINT handler for the test, and puts back what
// was there before.
class CustomHandler {
 public:
  CustomHandler() {
    custom_handler_calls = 0;
    struct sigaction action {};
    action.sa_handler = count_sigint;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, &saved_);
  }
  ~CustomHandler() { sigaction(SIGINT, &saved_, nullptr); }

  static bool installed() {
    struct sigaction current {};
    sigaction(SIGINT, nullptr, &current);
    return current.sa_handler == count_sigint;
  }

 private:
  struct sigaction saved_ {};
};

// Training sees the loss x (so SGD at rate 1 lowers x by exactly 1 per step,
// and x = −steps); validation (no gradients) sees the next scripted value.
// Training step `interrupt_at` raises SIGINT, as a Ctrl-C during that batch.
struct InterruptedRun {
  explicit InterruptedRun(std::vector<double> script, int64_t interrupt_at)
      : script(std::move(script)), interrupt_at(interrupt_at) {}

  downhill::Loss loss() {
    return [this](const downhill::Batch&) -> downhill::Evaluation {
      if (!torch::GradMode::is_enabled()) {
        const double value = script.at(validations++);
        return x.sum() * 0 + value;
      }
      if (++steps == interrupt_at) {
        for (int k = 0; k < raises; ++k) std::raise(SIGINT);
        handler_calls_after_raising = custom_handler_calls;
      }
      return x.sum();
    };
  }

  torch::Tensor x = torch::zeros({1}, torch::dtype(torch::kFloat64).requires_grad(true));
  std::vector<double> script;
  int64_t interrupt_at;
  int raises = 1;  // SIGINTs raised during step `interrupt_at`
  int handler_calls_after_raising = -1;
  int64_t steps = 0;
  size_t validations = 0;
};

// Three steps per pass, validation after every pass; validations at steps 0,
// 3 and 6 score 5, 3, 4, so the best parameters are those after step 3: x = −3.
// SIGINT comes during step 8, the middle of the third pass.
const std::vector<double> kScript = {5.0, 3.0, 4.0, 4.0, 4.0, 4.0};
constexpr int64_t kInterruptAt = 8;
constexpr double kBestX = -3.0;

downhill::Options loop_options() {
  return downhill::Options()
      .algo("sgd")
      .learning_rate(1.0)
      .validate_every(1)
      .patience(100)
      .max_updates(50);
}

TEST(Interrupt, MinimizeFinishesTheBatchRestoresTheBestAndReturns) {
  CustomHandler handler;
  InterruptedRun run(kScript, kInterruptAt);
  downhill::Dataset train(downhill::Batch{}, downhill::DatasetOptions().iteration_size(3));
  downhill::Dataset valid{downhill::Batch{}};
  const auto [training, validation] =
      downhill::minimize(run.loss(), {{"x", run.x}}, train, valid, loop_options());

  EXPECT_EQ(run.steps, kInterruptAt);  // the interrupted batch finished, no more followed
  EXPECT_EQ(run.validations, 3u);
  EXPECT_DOUBLE_EQ(run.x.item<double>(), kBestX);
  // The last complete pair: pass 2 (x from −3 to −6, mean of −3, −4, −5), validation 2.
  EXPECT_DOUBLE_EQ(training.at("loss"), -4.0);
  EXPECT_DOUBLE_EQ(validation.at("loss"), 3.0);

  EXPECT_EQ(custom_handler_calls, 0);  // downhill handled the Ctrl-C itself
  EXPECT_TRUE(CustomHandler::installed());
  std::raise(SIGINT);  // and a Ctrl-C now goes to the handler that was there before
  EXPECT_EQ(custom_handler_calls, 1);
}

TEST(Interrupt, IterateEndsTheRangeAndRestoresTheBest) {
  CustomHandler handler;
  InterruptedRun run(kScript, kInterruptAt);
  auto opt = downhill::build("sgd", run.loss(), {{"x", run.x}}, loop_options());
  downhill::Dataset train(downhill::Batch{}, downhill::DatasetOptions().iteration_size(3));
  downhill::Dataset valid{downhill::Batch{}};
  int items = 0;
  for (const auto& item : opt->iterate(train, &valid)) {
    (void)item;
    ++items;
    EXPECT_FALSE(CustomHandler::installed());  // downhill's own handler, during the loop
  }
  EXPECT_EQ(items, 2);  // the interrupted third pass yields nothing
  EXPECT_EQ(run.steps, kInterruptAt);
  EXPECT_DOUBLE_EQ(run.x.item<double>(), kBestX);
  EXPECT_EQ(custom_handler_calls, 0);
  EXPECT_TRUE(CustomHandler::installed());
}

TEST(Interrupt, AnInterruptDoesNotCarryOverToTheNextRun) {
  CustomHandler handler;
  InterruptedRun first(kScript, kInterruptAt);
  downhill::Dataset train(downhill::Batch{}, downhill::DatasetOptions().iteration_size(3));
  downhill::Dataset valid{downhill::Batch{}};
  downhill::minimize(first.loss(), {{"x", first.x}}, train, valid, loop_options());
  EXPECT_EQ(first.steps, kInterruptAt);

  // A run without Ctrl-C goes to its own end (max_updates 4: 12 steps).
  InterruptedRun second(std::vector<double>(10, 1.0), /*interrupt_at=*/-1);
  downhill::minimize(second.loss(), {{"x", second.x}}, train, valid, loop_options().max_updates(4));
  EXPECT_EQ(second.steps, 12);
  EXPECT_EQ(custom_handler_calls, 0);
  EXPECT_TRUE(CustomHandler::installed());
}

// docs/guide.md: "A second Ctrl-C during the same loop goes to the previous handler".
// Both come during step 8; the previous handler (ours, standing in for the default one
// that would end the program) must see the second at once, and downhill still ends the
// loop as for one Ctrl-C.
TEST(Interrupt, ASecondCtrlCGoesToThePreviousHandler) {
  CustomHandler handler;
  InterruptedRun run(kScript, kInterruptAt);
  run.raises = 2;
  downhill::Dataset train(downhill::Batch{}, downhill::DatasetOptions().iteration_size(3));
  downhill::Dataset valid{downhill::Batch{}};
  downhill::minimize(run.loss(), {{"x", run.x}}, train, valid, loop_options());

  EXPECT_EQ(run.handler_calls_after_raising, 1);  // the first to downhill, the second to us
  EXPECT_EQ(custom_handler_calls, 1);
  EXPECT_EQ(run.steps, kInterruptAt);  // the first Ctrl-C still ended the loop there
  EXPECT_DOUBLE_EQ(run.x.item<double>(), kBestX);
  EXPECT_TRUE(CustomHandler::installed());
  std::raise(SIGINT);
  EXPECT_EQ(custom_handler_calls, 2);
}

// Three Ctrl-C in one step: the second and the third both reach the previous handler.
TEST(Interrupt, EveryCtrlCAfterTheFirstGoesToThePreviousHandler) {
  CustomHandler handler;
  InterruptedRun run(kScript, kInterruptAt);
  run.raises = 3;
  auto opt = downhill::build("sgd", run.loss(), {{"x", run.x}}, loop_options());
  downhill::Dataset train(downhill::Batch{}, downhill::DatasetOptions().iteration_size(3));
  downhill::Dataset valid{downhill::Batch{}};
  int items = 0;
  for (const auto& item : opt->iterate(train, &valid)) {
    (void)item;
    ++items;
  }
  EXPECT_EQ(items, 2);
  EXPECT_EQ(run.handler_calls_after_raising, 2);
  EXPECT_EQ(custom_handler_calls, 2);
  EXPECT_TRUE(CustomHandler::installed());
}

}  // namespace
