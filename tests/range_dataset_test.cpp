// A Dataset from a range (downhill/range_dataset.h): a torch::data DataLoader or a vector of
// batches, one walk a pass, restarted each pass; iteration_size across walks; a checkpoint
// inside a pass resumes at the same batch of a new walk; bad ranges refused by name.
#include <downhill/downhill.h>
#include <downhill/range_dataset.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using downhill::Batch;
using downhill::DatasetOptions;
using downhill::testing::message_of;
using downhill::testing::TemporaryFolder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Samples 0, 1, ..., n-1 (as doubles), each its own target times 2.
struct Numbers : torch::data::datasets::Dataset<Numbers> {
  explicit Numbers(int64_t n) : x(torch::arange(n, torch::kDouble)) {}
  torch::data::Example<> get(size_t index) override {
    const auto i = static_cast<int64_t>(index);
    return {x.narrow(0, i, 1), 2 * x.narrow(0, i, 1)};
  }
  torch::optional<size_t> size() const override { return static_cast<size_t>(x.size(0)); }
  torch::Tensor x;
};

// A loader of Numbers(n) in order, `batch` samples a batch, stacked into {data, target}.
auto sequential_loader(int64_t n, size_t batch) {
  return torch::data::make_data_loader<torch::data::samplers::SequentialSampler>(
      Numbers(n).map(torch::data::transforms::Stack<>()),
      torch::data::DataLoaderOptions().batch_size(batch));
}

// The first value of each batch, and the batch's length.
std::vector<std::string> firsts(std::vector<Batch> batches) {
  std::vector<std::string> out;
  for (const auto& b : batches) {
    out.push_back(std::to_string(static_cast<int>(b[0].flatten()[0].item<double>())) + "x" +
                  std::to_string(b[0].size(0)));
  }
  return out;
}

// The batches of one pass, taken as the loop takes them.
std::vector<Batch> one_pass(downhill::Dataset& data) {
  std::vector<Batch> out;
  for (int64_t b = 0; !data.pass_over(b); ++b) out.push_back(data.next());
  return out;
}

TEST(RangeDataset, APassIsOneWalkOfADataLoaderRestartedEachPass) {
  auto loader = sequential_loader(10, 4);
  auto data = downhill::from_range(*loader, DatasetOptions().name("train"));
  EXPECT_TRUE(data.walks());
  EXPECT_EQ(data.iteration_size(), 0);  // not known before a walk has ended
  // 10 samples in batches of 4: 4, 4 and 2; {data, target} with the target twice the data.
  const auto first = one_pass(data);
  EXPECT_THAT(firsts(first), ElementsAre("0x4", "4x4", "8x2"));
  ASSERT_EQ(first[2].size(), 2u);
  EXPECT_TRUE(torch::equal(first[2][0], torch::tensor({{8.0}, {9.0}}, torch::kDouble)));
  EXPECT_TRUE(torch::equal(first[2][1], torch::tensor({{16.0}, {18.0}}, torch::kDouble)));
  EXPECT_EQ(data.iteration_size(), 3);
  EXPECT_THAT(firsts(one_pass(data)), ElementsAre("0x4", "4x4", "8x2"));
}

TEST(RangeDataset, ALoaderWithoutStackIsStackedAndTheDatasetCanOwnIt) {
  auto loader = torch::data::make_data_loader<torch::data::samplers::SequentialSampler>(
      Numbers(5), torch::data::DataLoaderOptions().batch_size(2));
  auto data = downhill::from_range(std::move(loader));  // owned: the unique_ptr is gone
  const auto pass = one_pass(data);
  EXPECT_THAT(firsts(pass), ElementsAre("0x2", "2x2", "4x1"));
  EXPECT_EQ(pass[0][0].sizes(), (torch::IntArrayRef{2, 1}));
  EXPECT_TRUE(torch::equal(pass[1][1], torch::tensor({{4.0}, {6.0}}, torch::kDouble)));
}

TEST(RangeDataset, WithIterationSizeAPassTakesThatManyBatchesAWalkThatEndsStartingTheNext) {
  const std::vector<Batch> batches = {
      {torch::tensor({0.0})}, {torch::tensor({1.0})}, {torch::tensor({2.0})}};
  auto data = downhill::from_range(batches, DatasetOptions().iteration_size(5));
  EXPECT_THAT(firsts(one_pass(data)), ElementsAre("0x1", "1x1", "2x1", "0x1", "1x1"));
  EXPECT_THAT(firsts(one_pass(data)), ElementsAre("2x1", "0x1", "1x1", "2x1", "0x1"));
  EXPECT_EQ(data.iteration_size(), 5);
}

// Least squares w·x ≈ y over a range of `n` batches of one sample each (x_k = (k+1)/n,
// y_k = 2 x_k), trained by SGD, validated on a range of its own.
struct RangeRun {
  explicit RangeRun(int64_t n) {
    for (int64_t k = 0; k < n; ++k) {
      const double x = static_cast<double>(k + 1) / static_cast<double>(n);
      batches.push_back(
          {torch::tensor({x}, torch::kDouble), torch::tensor({2 * x}, torch::kDouble)});
    }
  }
  downhill::RunSummary run(downhill::Options options) {
    auto train = downhill::from_range(batches, DatasetOptions().name("train"));
    auto valid = downhill::from_range(batches, DatasetOptions().name("valid"));
    auto loss = [this](const Batch& b) -> downhill::Evaluation {
      if (downhill::current_phase() == downhill::Phase::kTraining) {
        trained.push_back(b[0].item<double>());
      }
      return (w * b[0] - b[1]).square().mean();
    };
    auto opt = downhill::build("sgd", loss, {{"w", w}}, options.learning_rate(0.5).patience(100));
    opt->minimize(train, &valid);
    return opt->last_run();
  }
  std::vector<Batch> batches;
  torch::Tensor w = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
  std::vector<double> trained;  // the x of each training batch, in order
};

TEST(RangeDataset, ACheckpointInsideAPassResumesAtTheSameBatchOfANewWalk) {
  TemporaryFolder folder("range_resume");
  const auto path = folder.file("run.ckpt");
  // 5 batches a pass: 3 updates stop inside pass 1; 8 are pass 1 and 3 batches of pass 2.
  RangeRun straight(5);
  straight.run(downhill::Options().max_steps(8));
  ASSERT_EQ(straight.trained.size(), 8u);

  RangeRun first(5);
  first.run(downhill::Options().max_steps(3).checkpoint(path));
  EXPECT_THAT(first.trained, ElementsAre(0.2, 0.4, 0.6));
  RangeRun resumed(5);
  const auto summary = resumed.run(downhill::Options().max_steps(8).checkpoint(path).resume(true));
  // The new walk drops the 3 batches taken, and the run goes on from the 4th.
  EXPECT_THAT(resumed.trained, ElementsAre(0.8, 1.0, 0.2, 0.4, 0.6));
  EXPECT_EQ(summary.passes, 1);
  EXPECT_EQ(summary.updates, 8);
  EXPECT_TRUE(torch::equal(resumed.w, straight.w)) << resumed.w << " resumed, " << straight.w;
}

TEST(RangeDataset, BadRangesAreRefusedNamingTheDataset) {
  const std::vector<Batch> none;
  auto empty = downhill::from_range(none, DatasetOptions().name("empty"));
  EXPECT_THAT(message_of<std::invalid_argument>([&] { empty.pass_over(0); }),
              HasSubstr("dataset 'empty': a walk of its range gave no batch"));

  const std::vector<Batch> uneven = {{torch::ones({1})}, {torch::ones({1}), torch::ones({1})}};
  auto data = downhill::from_range(uneven, DatasetOptions().name("uneven"));
  data.next();
  EXPECT_THAT(
      message_of<std::invalid_argument>([&] { data.next(); }),
      HasSubstr("dataset 'uneven': the range returned 2 tensors, but its first batch had 1"));

  EXPECT_THAT(
      message_of<std::invalid_argument>(
          [] { downhill::Dataset::of_walks(nullptr, DatasetOptions().name("nothing")); }),
      HasSubstr("dataset 'nothing': the function that starts a walk of its range is empty"));
  // A tensor dataset's place does not fit a range.
  auto three = downhill::from_range(uneven, DatasetOptions().name("range"));
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                three.restore_position({1, 0}, 0);
              }),
              HasSubstr("dataset 'range' walks a range"));
}

}  // namespace
