// Optimizer::load_state: the state that state() gave, put back with the update counter, as
// torch.optim's load_state_dict (the Python drop-ins use it).

#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>
#include <vector>

namespace {

downhill::NamedTensors copies(const downhill::NamedTensors& state) {
  downhill::NamedTensors out;
  for (const auto& [name, tensor] : state) out.emplace_back(name, tensor.detach().clone());
  return out;
}

TEST(LoadState, ContinuesBitForBitFromAnotherOptimizersState) {
  torch::manual_seed(0);
  auto a = torch::randn({4, 3});
  auto b = a.clone();
  const auto options = downhill::Options().learning_rate(0.01).momentum(0.5);
  auto first = downhill::build("adam", {{"w", a}}, options);
  auto second = downhill::build("adam", {{"w", b}}, options);
  std::vector<torch::Tensor> grads;
  for (int k = 0; k < 8; ++k) grads.push_back(torch::randn({4, 3}));
  for (int k = 0; k < 4; ++k) ASSERT_TRUE(first->apply({grads[k]}));
  b.copy_(a);
  second->load_state(copies(first->state()), first->update_count());
  EXPECT_EQ(second->update_count(), 4);
  for (int k = 4; k < 8; ++k) {
    ASSERT_TRUE(first->apply({grads[k]}));
    ASSERT_TRUE(second->apply({grads[k]}));
  }
  EXPECT_TRUE(torch::equal(a, b));
}

TEST(LoadState, RefusesWhatDoesNotFitAndChangesNothing) {
  auto w = torch::zeros({2});
  auto opt = downhill::build("adam", {{"w", w}}, downhill::Options().learning_rate(0.1));
  ASSERT_TRUE(opt->apply({torch::ones({2})}));
  const auto before = copies(opt->state());
  auto expect_refused = [&](const downhill::NamedTensors& state, int64_t count,
                            const std::string& words) {
    try {
      opt->load_state(state, count);
      ADD_FAILURE() << "accepted; expected a refusal naming " << words;
    } catch (const std::invalid_argument& error) {
      EXPECT_NE(std::string(error.what()).find(words), std::string::npos) << error.what();
    }
    const auto after = opt->state();
    for (size_t i = 0; i < before.size(); ++i) {
      EXPECT_TRUE(torch::equal(before[i].second, after[i].second)) << before[i].first;
    }
    EXPECT_EQ(opt->update_count(), 1);
  };
  const auto zeros = torch::zeros({2});
  expect_refused({{"w.m", zeros}}, 3, "'w.v' is missing");
  expect_refused({{"w.m", zeros}, {"w.v", zeros}, {"w.x", zeros}}, 3, "no state tensor 'w.x'");
  expect_refused({{"w.m", zeros}, {"w.m", zeros}}, 3, "given twice");
  expect_refused({{"w.m", torch::zeros({3})}, {"w.v", zeros}}, 3, "allowed: [2] Float");
  expect_refused({{"w.m", zeros.to(torch::kDouble)}, {"w.v", zeros}}, 3, "Double");
  expect_refused({{"w.m", zeros}, {"w.v", zeros}}, -1, ">= 0");
}

}  // namespace
