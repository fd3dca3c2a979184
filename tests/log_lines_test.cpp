// The content of the loop's log lines (docs/guide.md, "Logging"): the settings, one line per
// validation ("*" when it improved), one per pass ("ALGO N monitors"), "patience elapsed!",
// "interrupted!", and the line listing the parameters minimize() found.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "test_support.h"

namespace {

using downhill::testing::LogCapture;

constexpr size_t kSettingCount = 53;  // the settings of options.h

// The captured lines ("LEVEL message"), split into the "setting ..." lines (debug), the
// "NAME settings: ..." summary (info) and the others.
struct Lines {
  std::vector<std::string> settings;
  std::vector<std::string> summary;
  std::vector<std::string> others;
};

Lines split(const std::string& text) {
  Lines out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("debug setting ", 0) == 0) {
      out.settings.push_back(line);
    } else if (line.rfind("info ", 0) == 0 && line.find(" settings: ") != std::string::npos) {
      out.summary.push_back(line);
    } else {
      out.others.push_back(line);
    }
  }
  return out;
}

bool contains(const std::vector<std::string>& lines, const std::string& line) {
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

// Training sees the loss x with a monitor "half" = x/2; SGD at rate 1 lowers x by
// exactly 1 per step, so a pass's line reports x = −(steps before it). Validation
// (no gradients) reports the next value v of the script, and half = v/2.
struct ScriptedRun {
  explicit ScriptedRun(std::vector<double> script) : script(std::move(script)) {}

  downhill::Loss loss() {
    return [this](const downhill::Batch&) -> downhill::Evaluation {
      if (!torch::GradMode::is_enabled()) {
        const double value = script.at(validations++);
        return {x.sum() * 0 + value, {{"half", x.sum() * 0 + value / 2}}};
      }
      if (++steps == interrupt_at) std::raise(SIGINT);
      return {x.sum(), {{"half", x.sum() / 2}}};
    };
  }

  torch::Tensor x = torch::zeros({1}, torch::dtype(torch::kFloat64).requires_grad(true));
  std::vector<double> script;
  int64_t interrupt_at = -1;
  int64_t steps = 0;
  size_t validations = 0;
};

TEST(LogLines, ValidationPassAndPatienceLines) {
  // Validations at passes 0..3 score 5, 3, 4, 4: the first two improve; with patience 1
  // the fourth is the second without improvement, and the loop stops before pass 4.
  ScriptedRun run({5.0, 3.0, 4.0, 4.0});
  auto opt = downhill::build(
      "sgd", run.loss(), {{"x", run.x}},
      downhill::Options().learning_rate(1.0).validate_every(1).patience(1).max_updates(100));
  downhill::Dataset train{downhill::Batch{}};
  LogCapture capture(spdlog::level::debug);
  opt->minimize(train);
  const auto lines = split(capture.text());

  // Every setting at debug level, and one info line with those changed from the defaults.
  EXPECT_EQ(lines.settings.size(), kSettingCount);
  EXPECT_TRUE(contains(lines.settings, "debug setting learning_rate = 1"));
  EXPECT_TRUE(contains(lines.settings, "debug setting patience = 1"));
  EXPECT_TRUE(contains(lines.settings, "debug setting max_passes = 100"));
  EXPECT_TRUE(contains(lines.settings, "debug setting momentum = 0"));
  EXPECT_EQ(capture.text().rfind("debug setting ", 0), 0u);  // the settings come first
  EXPECT_EQ(lines.summary,
            (std::vector<std::string>{"info SGD settings: learning_rate = 1, patience = 1, "
                                      "validate_every = 1, max_passes = 100, the others default"}));
  EXPECT_EQ(lines.others, (std::vector<std::string>{
                              "info validation 1 loss=5.000000 half=2.500000 *",
                              "info SGD 1 loss=0.000000 half=0.000000",
                              "info validation 2 loss=3.000000 half=1.500000 *",
                              "info SGD 2 loss=-1.000000 half=-0.500000",
                              "info validation 3 loss=4.000000 half=2.000000",
                              "info SGD 3 loss=-2.000000 half=-1.000000",
                              "info validation 4 loss=4.000000 half=2.000000",
                              "info patience elapsed!",
                              "info stopped (patience) after 3 passes and 3 updates",
                              "info best: validation 2, after pass 1: loss=3.000000 half=1.500000",
                          }));
  EXPECT_EQ(run.steps, 3);
}

TEST(LogLines, AWorseValidationHasNoStarAndAnEqualOneNeither) {
  // 2, 2.5 (worse), 2 (equal to the best: not an improvement), 1 (better).
  ScriptedRun run({2.0, 2.5, 2.0, 1.0, 1.5});
  auto opt = downhill::build(
      "sgd", run.loss(), {{"x", run.x}},
      downhill::Options().learning_rate(1.0).validate_every(2).patience(5).max_updates(7));
  downhill::Dataset train{downhill::Batch{}};
  LogCapture capture;
  opt->minimize(train);
  const auto lines = split(capture.text());
  // validate_every 2: validations before passes 1, 3, 5, 7; max_updates 7 ends it after
  // pass 7 with a closing validation (1.5: worse than the best, 1).
  EXPECT_EQ(lines.others, (std::vector<std::string>{
                              "info validation 1 loss=2.000000 half=1.000000 *",
                              "info SGD 1 loss=0.000000 half=0.000000",
                              "info SGD 2 loss=-1.000000 half=-0.500000",
                              "info validation 2 loss=2.500000 half=1.250000",
                              "info SGD 3 loss=-2.000000 half=-1.000000",
                              "info SGD 4 loss=-3.000000 half=-1.500000",
                              "info validation 3 loss=2.000000 half=1.000000",
                              "info SGD 5 loss=-4.000000 half=-2.000000",
                              "info SGD 6 loss=-5.000000 half=-2.500000",
                              "info validation 4 loss=1.000000 half=0.500000 *",
                              "info SGD 7 loss=-6.000000 half=-3.000000",
                              "info validation 5 loss=1.500000 half=0.750000",
                              "info stopped (max_passes) after 7 passes and 7 updates",
                              "info best: validation 4, after pass 6: loss=1.000000 half=0.500000",
                          }));
}

volatile std::sig_atomic_t fallback_calls = 0;
extern "C" void count_fallback(int) { fallback_calls = fallback_calls + 1; }

TEST(LogLines, InterruptedLine) {
  // A handler of our own, so that a loop that failed to catch the SIGINT would not
  // end the test program; put back afterwards.
  fallback_calls = 0;
  struct sigaction action {
  }, saved{};
  action.sa_handler = count_fallback;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &saved);

  ScriptedRun run({5.0, 3.0, 9.0});
  run.interrupt_at = 2;  // during the only step of pass 2
  auto opt = downhill::build(
      "sgd", run.loss(), {{"x", run.x}},
      downhill::Options().learning_rate(1.0).validate_every(1).patience(5).max_updates(100));
  downhill::Dataset train{downhill::Batch{}};
  {
    LogCapture capture;
    opt->minimize(train);
    const auto lines = split(capture.text());
    // The interrupted pass gets no line of its own.
    EXPECT_EQ(lines.others,
              (std::vector<std::string>{
                  "info validation 1 loss=5.000000 half=2.500000 *",
                  "info SGD 1 loss=0.000000 half=0.000000",
                  "info validation 2 loss=3.000000 half=1.500000 *",
                  "info interrupted!",
                  "info stopped (interrupted) after 1 passes and 2 updates",
                  "info best: validation 2, after pass 1: loss=3.000000 half=1.500000",
              }));
  }
  EXPECT_EQ(fallback_calls, 0);
  EXPECT_DOUBLE_EQ(run.x.item<double>(), -1.0);  // the best, after one step
  sigaction(SIGINT, &saved, nullptr);
}

TEST(LogLines, EachPassLineNamesTheAlgorithm) {
  // The first pass reports the loss before its only step: (0.5 − 2)² = 2.25 whatever the
  // algorithm does with the gradient g = 2(0.5 − 2) = −3. The closing validation reports
  // (x − 2)² after that step, with lr 0.1: SGD moves x by 0.3; centred RMSProp by
  // lr·|g| / sqrt(γ(1−γ)g² + ε), γ = exp(−ln 2 / 14) (its G − f² after one step); Adam,
  // bias-corrected, by lr·|g| / (|g| + ε).
  const double gamma = std::exp(-std::log(2.0) / 14);
  const double rmsprop_move = 0.1 * 3 / std::sqrt(gamma * (1 - gamma) * 9 + 1e-8);
  const double adam_move = 0.1 * 3 / (3 + 1e-8);
  const std::vector<std::tuple<std::string, std::string, double>> algorithms = {
      {"sgd", "SGD", 0.3}, {"rmsprop", "RMSProp", rmsprop_move}, {"adam", "Adam", adam_move}};
  for (const auto& [algo, display, move] : algorithms) {
    const double after = (0.5 + move - 2) * (0.5 + move - 2);
    char closing[64];
    std::snprintf(closing, sizeof closing, "info validation 2 loss=%.6f *", after);
    char best[80];
    std::snprintf(best, sizeof best, "info best: validation 2, after pass 1: loss=%.6f", after);
    auto x = torch::full({1}, 0.5, torch::dtype(torch::kFloat64).requires_grad(true));
    auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
      return (x - 2).square().sum();
    };
    LogCapture capture;
    downhill::minimize(loss, {{"x", x}}, downhill::Batch{},
                       downhill::Options().algo(algo).learning_rate(0.1).max_updates(1));
    const auto lines = split(capture.text());
    EXPECT_TRUE(lines.settings.empty()) << algo;  // at debug level only
    // algo = rmsprop is the default, so only the others name it.
    const std::string changed_algo = algo == "rmsprop" ? "" : "algo = " + algo + ", ";
    EXPECT_EQ(lines.summary,
              (std::vector<std::string>{"info " + display + " settings: " + changed_algo +
                                        "learning_rate = 0.1, max_passes = 1, "
                                        "the others default"}))
        << algo;
    EXPECT_EQ(lines.others,
              (std::vector<std::string>{
                  "info validation 1 loss=2.250000 *", "info " + display + " 1 loss=2.250000",
                  closing, "info stopped (max_passes) after 1 passes and 1 updates", best}))
        << algo;
  }
}

TEST(LogLines, MinimizeWithoutParamsListsTheOnesItFound) {
  auto a = torch::ones({2}, torch::dtype(torch::kFloat64).requires_grad(true));
  auto b = torch::full({1}, 3.0, torch::dtype(torch::kFloat64).requires_grad(true));
  auto c = torch::ones({1}, torch::kFloat64);  // not a parameter: no grad
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    return (a * 2).sum() + (b * c).sum();  // 4 + 3 = 7 at the start
  };
  LogCapture capture;
  downhill::minimize(loss, downhill::Batch{},
                     downhill::Options().algo("sgd").learning_rate(0.5).max_updates(1));
  const auto lines = split(capture.text());
  ASSERT_FALSE(lines.others.empty());
  // Logged before the loop starts, then the loop's own lines.
  EXPECT_EQ(lines.others, (std::vector<std::string>{
                              "info found 2 parameters in the loss: unnamed0, unnamed1",
                              "info validation 1 loss=7.000000 *",
                              "info SGD 1 loss=7.000000",
                              // The closing validation: a ← 1 − 0.5·2 = 0, b ← 3 − 0.5.
                              "info validation 2 loss=2.500000 *",
                              "info stopped (max_passes) after 1 passes and 1 updates",
                              "info best: validation 2, after pass 1: loss=2.500000",
                          }));
  EXPECT_EQ(capture.text().rfind("info found 2 parameters", 0), 0u);
}

}  // namespace

namespace {

// log_to: downhill's lines in its own format ("HH:MM:SS text") on any stream, in one call.
TEST(LogTo, SendsTheLinesToAStreamInDownhillsFormat) {
  const auto saved_sinks = downhill::logger()->sinks();
  const auto saved_level = downhill::logger()->level();
  std::ostringstream out;
  downhill::log_to(out);
  downhill::logger()->set_level(spdlog::level::info);
  auto x = torch::full({1}, 0.5, torch::dtype(torch::kFloat64).requires_grad(true));
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    return (x - 2).square().sum();
  };
  downhill::minimize(loss, {{"x", x}}, downhill::Batch{},
                     downhill::Options().algo("sgd").learning_rate(0.1).max_updates(1));
  downhill::logger()->sinks() = saved_sinks;
  downhill::logger()->set_level(saved_level);
  std::istringstream lines(out.str());
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) {
    // "12:34:56 " then the text: two digits, a colon, two digits, a colon, two digits.
    ASSERT_GE(line.size(), 9u) << line;
    for (const size_t digit : {0, 1, 3, 4, 6, 7}) {
      EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(line[digit]))) << line;
    }
    EXPECT_EQ(line[2], ':') << line;
    EXPECT_EQ(line[5], ':') << line;
    EXPECT_EQ(line[8], ' ') << line;
  }
  EXPECT_GE(count, 4);
  EXPECT_NE(out.str().find(" SGD settings: algo = sgd, learning_rate = 0.1"), std::string::npos)
      << out.str();
}

}  // namespace
