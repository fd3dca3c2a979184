// L-BFGS against torch.optim.LBFGS (strong Wolfe, history 10, its default tolerances), run by
// /usr/bin/python3 on the same problems from the same starts (bench/smooth_peer.py): each
// stops by itself after a number of loss evaluations within 10% of torch's (the same
// algorithm: they agree exactly today), at a loss within 1e-8 of torch's.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>

#include "smooth_problems.h"

namespace {

struct PeerResult {
  int64_t evaluations = 0;
  double loss = 0;
};

// What smooth_peer.py prints: "NAME EVALUATIONS LOSS SECONDS" per problem.
std::map<std::string, PeerResult> run_peer() {
  const std::string command = std::string("/usr/bin/python3 ") + DOWNHILL_SMOOTH_PEER +
                              " 1 rosenbrock_2d rosenbrock_100d logistic_500x10 oscillator";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return {};
  std::string output;
  char chunk[256];
  while (fgets(chunk, sizeof chunk, pipe)) output += chunk;
  if (pclose(pipe) != 0) return {};
  std::map<std::string, PeerResult> results;
  std::istringstream lines(output);
  std::string name;
  PeerResult result;
  double seconds = 0;
  while (lines >> name >> result.evaluations >> result.loss >> seconds) results[name] = result;
  return results;
}

const std::map<std::string, PeerResult>& peer() {
  static const auto results = run_peer();
  return results;
}

class AgainstTorch : public ::testing::TestWithParam<smooth::Problem> {};

TEST_P(AgainstTorch, AsManyEvaluationsToTheSameMinimum) {
  const auto& problem = GetParam();
  ASSERT_TRUE(peer().count(problem.name)) << "smooth_peer.py gave no result for " << problem.name;
  const auto& torch_result = peer().at(problem.name);
  auto x = problem.start.clone().requires_grad_(true);
  int64_t calls = 0;
  auto opt = downhill::build(
      "lbfgs",
      [&](const downhill::Batch&) -> downhill::Evaluation {
        ++calls;
        return problem.loss(x);
      },
      {{"x", x}},
      // torch's tolerance_change stops on the loss's change too (absolute; the losses here
      // are below 1, where loss_tolerance is absolute as well).
      downhill::Options().loss_tolerance(1e-9).patience(1000));
  downhill::Dataset nothing(downhill::Batch{});
  opt->minimize(nothing);
  const double loss = problem.loss(x).item<double>();
  EXPECT_NEAR(loss, torch_result.loss, 1e-8) << problem.name;
  EXPECT_LE(std::abs(calls - torch_result.evaluations), 0.1 * torch_result.evaluations)
      << problem.name << ": " << calls << " evaluations here, " << torch_result.evaluations
      << " by torch.optim.LBFGS";
  EXPECT_EQ(opt->last_run().loss_evaluations, calls);
  std::printf("%s: %lld evaluations here, %lld by torch.optim.LBFGS; loss %.3g and %.3g\n",
              problem.name.c_str(), static_cast<long long>(calls),
              static_cast<long long>(torch_result.evaluations), loss, torch_result.loss);
}

INSTANTIATE_TEST_SUITE_P(Problems, AgainstTorch,
                         ::testing::Values(smooth::rosenbrock_2d(), smooth::rosenbrock_100d(),
                                           smooth::logistic(500, 10), smooth::oscillator()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
