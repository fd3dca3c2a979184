#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

TEST(Smoke, SgdStep) {
  auto x = torch::tensor({1.0, 2.0}, torch::requires_grad());
  auto opt = downhill::build("sgd", [&](const downhill::Batch&) -> downhill::Evaluation {
    return (x * x).sum();
  }, {{"x", x}}, downhill::Options().learning_rate(0.25));
  auto m = opt->step({});
  EXPECT_DOUBLE_EQ(m.at("loss"), 5.0);
  EXPECT_DOUBLE_EQ(x[0].item<double>(), 0.5);
  EXPECT_DOUBLE_EQ(x[1].item<double>(), 1.0);
}
