// DatasetOptions::shuffle_samples: a fresh permutation of the samples at construction and
// at each wrap-around, each batch gathered from it (as DataLoader(shuffle=true)), with
// reusable buffers that never change a batch the caller still holds, and bit-identical
// resume from checkpoints.
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using downhill::testing::message_of;
using downhill::testing::ScopedLogLevel;
using ::testing::HasSubstr;

constexpr int64_t kSamples = 10;
constexpr int64_t kBatch = 3;  // batches of 3, 3, 3 and 1 samples

// x holds each sample's index, y ten times it, so a batch shows which samples it holds
// and whether its rows stayed aligned.
struct IndexedData {
  torch::Tensor x = torch::arange(kSamples, torch::kDouble).reshape({kSamples, 1});
  torch::Tensor y = torch::arange(kSamples, torch::kDouble) * 10;
};

std::vector<int64_t> samples_of(const downhill::Batch& batch) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < batch[0].size(0); ++i) {
    const auto index = static_cast<int64_t>(batch[0][i][0].item<double>());
    EXPECT_EQ(batch[1][i].item<double>(), 10.0 * index) << "rows of x and y out of step";
    out.push_back(index);
  }
  return out;
}

downhill::DatasetOptions sample_options(uint64_t seed) {
  return downhill::DatasetOptions().batch_size(kBatch).shuffle_samples(true).generator(
      at::detail::createCPUGenerator(seed));
}

// Each round of 4 batches is the permutation torch::randperm draws from a generator
// seeded alike, cut into 3, 3, 3, 1; the next round is the next permutation.
TEST(ShuffleSamples, EachRoundIsAFreshPermutationOfTheSamples) {
  const IndexedData data;
  downhill::Dataset dataset({data.x, data.y}, sample_options(11));
  EXPECT_EQ(dataset.slice_count(), 4);
  EXPECT_EQ(dataset.iteration_size(), 4);
  auto reference = at::detail::createCPUGenerator(11);
  std::set<std::vector<int64_t>> first_batches;
  for (int round = 0; round < 3; ++round) {
    const auto permutation = torch::randperm(kSamples, reference, torch::kLong);
    std::vector<int64_t> seen;
    for (int64_t b = 0; b < 4; ++b) {
      const auto batch = samples_of(dataset.next());
      ASSERT_EQ(static_cast<int64_t>(batch.size()), b < 3 ? kBatch : 1) << "batch " << b;
      for (size_t i = 0; i < batch.size(); ++i) {
        EXPECT_EQ(batch[i], permutation[b * kBatch + static_cast<int64_t>(i)].item<int64_t>())
            << "round " << round << ", batch " << b << ", row " << i;
      }
      if (b == 0) first_batches.insert(batch);
      seen.insert(seen.end(), batch.begin(), batch.end());
    }
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> all(kSamples);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(seen, all) << "round " << round << " is not a permutation of the samples";
  }
  // Three rounds, three different first batches: samples are mixed anew, not slices reordered.
  EXPECT_EQ(first_batches.size(), 3u);
}

TEST(ShuffleSamples, WithoutShuffleTheSlicesStayInOrder) {
  const IndexedData data;
  downhill::Dataset dataset(
      {data.x, data.y},
      downhill::DatasetOptions().batch_size(kBatch).shuffle(false).shuffle_samples(true));
  EXPECT_EQ(samples_of(dataset.next()), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(samples_of(dataset.next()), (std::vector<int64_t>{3, 4, 5}));
}

// Along another axis the samples are columns.
TEST(ShuffleSamples, GathersAlongTheAxis) {
  const auto x = torch::arange(kSamples, torch::kDouble).reshape({1, kSamples}).repeat({2, 1});
  downhill::Dataset dataset({x}, sample_options(3).axis(1));
  auto reference = at::detail::createCPUGenerator(3);
  const auto permutation = torch::randperm(kSamples, reference, torch::kLong);
  const auto batch = dataset.next();
  ASSERT_EQ(batch[0].sizes(), (std::vector<int64_t>{2, kBatch}));
  for (int64_t i = 0; i < kBatch; ++i) {
    EXPECT_EQ(batch[0][1][i].item<double>(), permutation[i].item<double>());
  }
}

// Once the caller lets go of a batch, the next batch of that length reuses its memory; a
// batch the caller still holds (or a view of it) is never overwritten.
TEST(ShuffleSamples, BuffersAreReusedButHeldBatchesNeverChange) {
  const IndexedData data;
  downhill::Dataset dataset({data.x, data.y}, sample_options(5));
  const void* first_address = nullptr;
  {
    const auto batch = dataset.next();
    first_address = batch[0].data_ptr();
  }
  EXPECT_EQ(dataset.next()[0].data_ptr(), first_address);

  const auto held = dataset.next();
  const auto held_values = held[0].clone();
  const auto view = dataset.next()[0].view({-1});  // the fourth batch: a shorter one
  const auto after_wrap = dataset.next();          // a full batch of the next round
  EXPECT_NE(after_wrap[0].data_ptr(), held[0].data_ptr());
  EXPECT_TRUE(torch::equal(held[0], held_values));
  EXPECT_EQ(view.numel(), 1);
}

TEST(ShuffleSamples, PeekReturnsTheNextBatchWithoutConsumingIt) {
  const IndexedData data;
  downhill::Dataset dataset({data.x, data.y}, sample_options(9));
  const auto peeked = samples_of(dataset.peek());
  EXPECT_EQ(dataset.position(), 0);
  EXPECT_EQ(samples_of(dataset.next()), peeked);
  EXPECT_EQ(dataset.position(), 1);
}

TEST(ShuffleSamples, RestorePositionTakesASamplePermutation) {
  const IndexedData data;
  downhill::Dataset dataset({data.x, data.y}, sample_options(1));
  dataset.restore_position({9, 8, 7, 6, 5, 4, 3, 2, 1, 0}, 3);
  EXPECT_EQ(samples_of(dataset.next()), (std::vector<int64_t>{0}));
  // A slice order (4 entries) does not fit 10 samples; nor does a position past the batches.
  const auto message = message_of<std::invalid_argument>([&] {
    dataset.restore_position({0, 1, 2, 3}, 0);
  });
  EXPECT_THAT(message, HasSubstr("has 10 samples in 4 batches; the saved order (4 entries)"));
  EXPECT_THROW(dataset.restore_position({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 4), std::invalid_argument);
  // The batch at position 3 was the last of the round: it wrapped to 0, and the refusals
  // changed nothing.
  EXPECT_EQ(dataset.position(), 0);
}

// 3 passes + checkpoint + a fresh optimizer and dataset resumed for 4 more equal 7 passes
// straight: the sample permutation, the position inside it and the generator all resume.
TEST(ShuffleSamples, ResumeIsBitIdentical) {
  const ScopedLogLevel quiet(spdlog::level::off);
  const auto folder = std::filesystem::temp_directory_path() /
                      ("downhill_sample_shuffle_" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  const auto path = (folder / "run.ckpt").string();
  auto generator = at::detail::createCPUGenerator(77);
  const auto x = torch::randn({kSamples, 2}, generator, torch::kDouble);
  const auto y = x.mv(torch::tensor({1.5, -0.5}, torch::kDouble));

  auto run = [&](int64_t max_updates, bool resume, uint64_t seed) {
    auto w = torch::zeros({2}, torch::dtype(torch::kDouble).requires_grad(true));
    // iteration_size 3 of 4 batches: checkpoints fall inside a round of the data.
    downhill::Dataset train({x, y}, sample_options(seed).iteration_size(3));
    auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
      return (batch[0].mv(w) - batch[1]).square().mean();
    };
    auto options = downhill::Options().learning_rate(0.05).max_updates(max_updates).patience(100);
    if (resume) options.checkpoint(path).resume(true);
    auto opt = downhill::build("sgd", loss, {{"w", w}}, options);
    std::vector<double> losses;
    for (const auto& [training, validation] : opt->iterate(train)) {
      losses.push_back(training.at("loss"));
    }
    return std::make_pair(losses, w.detach().clone());
  };
  const auto straight = run(7, false, 21);
  ASSERT_EQ(straight.first.size(), 7u);
  const auto first = run(3, true, 21);
  ASSERT_EQ(first.first.size(), 3u);
  const auto resumed = run(7, true, 999);  // another seed: the order must come from the file
  ASSERT_EQ(resumed.first.size(), 4u);
  for (size_t k = 0; k < 4; ++k) {
    EXPECT_EQ(resumed.first[k], straight.first[k + 3]) << "pass " << k + 4;
  }
  EXPECT_TRUE(torch::equal(resumed.second, straight.second));
  std::filesystem::remove_all(folder);
}

}  // namespace
