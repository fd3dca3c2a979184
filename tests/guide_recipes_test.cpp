// The guide's recipes for a PyTorch user, compiled and held to what the guide says of them:
// no weight decay on biases and norms (groups), the model's weights saved beside the
// optimizer's checkpoint, and Options::batch_size beside a Dataset of one's own.
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "test_support.h"

namespace {

using downhill::testing::LogCapture;
using downhill::testing::TemporaryFolder;
using ::testing::HasSubstr;

torch::nn::Sequential small_model() {
  torch::manual_seed(3);
  return torch::nn::Sequential(torch::nn::Linear(4, 3),
                               torch::nn::LayerNorm(torch::nn::LayerNormOptions({3})),
                               torch::nn::Linear(3, 1));
}

TEST(GuideRecipes, NoWeightDecayOnBiasesAndNorms) {
  auto model = small_model();
  // The guide's recipe, as written there.
  std::vector<downhill::Params::Entry> decayed, undecayed;
  for (const auto& item : model->named_parameters()) {
    // Biases and LayerNorm/BatchNorm weights are 1-d; weights of Linear/Conv are not.
    (item.value().dim() <= 1 ? undecayed : decayed).emplace_back(item.key(), item.value());
  }
  downhill::Params params(decayed);                                          // group 0: decayed
  params.group(undecayed, [](downhill::Options& o) { o.weight_decay(0); });  // group 1: not
  auto opt = downhill::build("adamw", params);  // weight_decay 1e-2 on group 0 only

  // The two Linear weights are decayed; both biases and the LayerNorm's weight and bias not.
  ASSERT_EQ(params.size(), 6u);
  std::vector<std::string> decayed_names;
  for (size_t i = 0; i < params.size(); ++i) {
    if (params.group_of(i) == 0) decayed_names.push_back(params.name(i));
  }
  EXPECT_EQ(decayed_names, (std::vector<std::string>{"0.weight", "2.weight"}));
  EXPECT_EQ(opt->group_options(0).weight_decay(), 1e-2);
  EXPECT_EQ(opt->group_options(1).weight_decay(), 0.0);
  EXPECT_EQ(opt->group_options(1).learning_rate(), 1e-3);  // AdamW's, in both groups
  // With a zero gradient only decay moves a parameter: p ← p − lr·λ·p on group 0 alone.
  const auto before = model->named_parameters()["0.weight"].clone();
  const auto bias_before = model->named_parameters()["0.bias"].clone();
  std::vector<torch::Tensor> zeros;
  for (const auto& tensor : opt->tensors()) zeros.push_back(torch::zeros_like(tensor));
  ASSERT_TRUE(opt->apply(zeros));
  // Within float32's rounding of each value (about 6e-8 of it).
  EXPECT_TRUE(torch::allclose(model->named_parameters()["0.weight"], before * (1 - 1e-3 * 1e-2),
                              /*rtol=*/1e-6, /*atol=*/0));
  EXPECT_FALSE(torch::equal(model->named_parameters()["0.weight"], before));
  EXPECT_TRUE(torch::equal(model->named_parameters()["0.bias"], bias_before));
}

TEST(GuideRecipes, TheModelsWeightsSavedBesideTheCheckpoint) {
  TemporaryFolder folder("recipes_save");
  auto model = small_model();
  const auto x = torch::randn({16, 4});
  const auto y = torch::randn({16, 1});
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    return (model->forward(batch[0]) - batch[1]).square().mean();
  };
  auto opt = downhill::build(
      "adam", loss, model->named_parameters(),
      downhill::Options().learning_rate(1e-2).max_updates(3).checkpoint(folder.file("run.ckpt")));
  downhill::Dataset train({x, y}, downhill::DatasetOptions().batch_size(8));
  const downhill::testing::ScopedLogLevel quiet(spdlog::level::err);
  opt->minimize(train);
  torch::save(model, folder.file("model.pt"));
  auto restored = small_model();  // other values until loaded
  torch::load(restored, folder.file("model.pt"));
  EXPECT_TRUE(torch::equal(restored->forward(x), model->forward(x)));
}

TEST(GuideRecipes, OptionsBatchSizeBesideADatasetOfOnesOwnIsWarnedOf) {
  auto w = torch::zeros({1}, torch::requires_grad());
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    return (batch[0] * w).square().mean();
  };
  downhill::Dataset data({torch::ones({8})}, downhill::DatasetOptions().name("mine").batch_size(4));
  {
    LogCapture capture(spdlog::level::warn);
    auto opt =
        downhill::build("sgd", loss, {{"w", w}}, downhill::Options().batch_size(64).max_updates(1));
    opt->minimize(data);
    EXPECT_THAT(capture.text(), HasSubstr("Options::batch_size = 64 does nothing here: the "
                                          "dataset 'mine' has batch_size 4"));
  }
  {
    // Not set, or wrapping tensors with minimize(): no warning.
    LogCapture capture(spdlog::level::warn);
    auto opt = downhill::build("sgd", loss, {{"w", w}}, downhill::Options().max_updates(1));
    opt->minimize(data);
    downhill::minimize(loss, {{"w", w}}, downhill::Batch{torch::ones({8})},
                       downhill::Options().algo("sgd").batch_size(2).max_updates(1));
    EXPECT_EQ(capture.text().find("batch_size"), std::string::npos) << capture.text();
  }
}

TEST(GuideRecipes, AGeneratorTakingTheDefaultPassLengthSaysSo) {
  auto w = torch::zeros({1}, torch::requires_grad());
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    return (batch[0] * w).square().mean();
  };
  auto draw = [] { return downhill::Batch{torch::ones({4})}; };
  {
    LogCapture capture;
    downhill::Dataset data(draw, downhill::DatasetOptions().name("drawn"));
    downhill::build("sgd", loss, {{"w", w}}, downhill::Options().max_updates(1))->minimize(data);
    EXPECT_THAT(capture.text(), HasSubstr("dataset 'drawn' is a generator: 100 batches a pass, "
                                          "the default (DatasetOptions::iteration_size sets "
                                          "another)"));
  }
  {
    LogCapture capture;
    downhill::Dataset data(draw, downhill::DatasetOptions().name("drawn").iteration_size(100));
    downhill::build("sgd", loss, {{"w", w}}, downhill::Options().max_updates(1))->minimize(data);
    EXPECT_EQ(capture.text().find("is a generator"), std::string::npos) << capture.text();
  }
}

}  // namespace
