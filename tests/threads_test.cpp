// Two optimizers on separate parameters may run in two threads at once: the
// results are bit-identical to running them one after the other (issue 5).
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace {

// A factorization problem of its own: parameters, fixed data, a loss with a monitor.
struct Factorization {
  torch::Tensor u, v, data, valid;

  explicit Factorization(uint64_t seed) {
    auto generator = at::detail::createCPUGenerator(seed);
    u = torch::randn({30, 4}, generator).requires_grad_();
    v = torch::randn({4, 12}, generator).requires_grad_();
    data = torch::randn({30, 4}, generator).mm(torch::randn({4, 12}, generator));
    valid = data + 0.01 * torch::randn({30, 12}, generator);
  }

  downhill::Loss loss() const {
    return [u = u, v = v](const downhill::Batch& batch) -> downhill::Evaluation {
      // Each batch is a block of rows of the data and the matching rows of u.
      const auto& rows = batch[0];
      const auto& target = batch[1];
      auto err = u.index_select(0, rows).mm(v) - target;
      return {err.square().mean() + 1e-3 * v.square().sum(), {{"err", err.abs().mean()}}};
    };
  }
};

struct Trace {
  std::vector<downhill::Monitors> training, validation;
  std::vector<torch::Tensor> final_params;
};

// Runs the loop without shuffling, so that no global random state is involved.
Trace run(const std::string& algo, Factorization& problem) {
  auto rows = torch::arange(30, torch::kLong);
  downhill::Dataset train({rows, problem.data},
                          downhill::DatasetOptions().batch_size(7).shuffle(false));
  downhill::Dataset valid({rows, problem.valid},
                          downhill::DatasetOptions().batch_size(10).shuffle(false));
  auto opt = downhill::build(algo, problem.loss(), {{"u", problem.u}, {"v", problem.v}},
                             downhill::Options()
                                 .learning_rate(0.01)
                                 .momentum(0.5)
                                 .max_updates(150)
                                 .validate_every(5)
                                 .patience(1000)
                                 .monitor_gradients(true));
  Trace trace;
  for (const auto& [training, validation] : opt->iterate(train, &valid)) {
    trace.training.push_back(training);
    trace.validation.push_back(validation);
  }
  trace.final_params = {problem.u.detach().clone(), problem.v.detach().clone()};
  return trace;
}

void expect_identical(const Trace& expected, const Trace& actual, const std::string& what) {
  ASSERT_EQ(expected.training.size(), actual.training.size()) << what;
  for (size_t pass = 0; pass < expected.training.size(); ++pass) {
    for (const auto* pair : {&expected.training, &expected.validation}) {
      const auto& e = (*pair)[pass];
      const auto& a = pair == &expected.training ? actual.training[pass] : actual.validation[pass];
      ASSERT_EQ(e.size(), a.size()) << what << " pass " << pass + 1;
      for (const auto& [name, value] : e) {
        EXPECT_EQ(value, a.at(name)) << what << " pass " << pass + 1 << " " << name;
      }
    }
  }
  for (size_t i = 0; i < expected.final_params.size(); ++i) {
    EXPECT_TRUE(torch::equal(expected.final_params[i], actual.final_params[i])) << what;
  }
}

TEST(Threads, TwoOptimizersAtOnceMatchRunningThemOneAfterTheOther) {
  downhill::testing::ScopedLogLevel quiet(spdlog::level::off);
  Factorization adam_alone(1), rmsprop_alone(2);
  const Trace adam_sequential = run("adam", adam_alone);
  const Trace rmsprop_sequential = run("rmsprop", rmsprop_alone);
  // The two problems really are different runs.
  ASSERT_NE(adam_sequential.training.back().at("loss"),
            rmsprop_sequential.training.back().at("loss"));

  for (int repeat = 0; repeat < 3; ++repeat) {
    Factorization adam_problem(1), rmsprop_problem(2);
    Trace adam_concurrent, rmsprop_concurrent;
    std::thread adam_thread([&] { adam_concurrent = run("adam", adam_problem); });
    std::thread rmsprop_thread([&] { rmsprop_concurrent = run("rmsprop", rmsprop_problem); });
    adam_thread.join();
    rmsprop_thread.join();
    expect_identical(adam_sequential, adam_concurrent, "Adam, repeat " + std::to_string(repeat));
    expect_identical(rmsprop_sequential, rmsprop_concurrent,
                     "RMSProp, repeat " + std::to_string(repeat));
  }
}

}  // namespace
