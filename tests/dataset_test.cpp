// Datasets (docs/guide.md's datasets): slicing, pass boundaries, shuffling, views, generators.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

// Silences downhill's logger while the tests run and puts the previous level back after.
class QuietLogs : public ::testing::Environment {
 public:
  void SetUp() override { quiet_.emplace(spdlog::level::off); }
  void TearDown() override { quiet_.reset(); }

 private:
  std::optional<downhill::testing::ScopedLogLevel> quiet_;
};
[[maybe_unused]] const auto* const kQuietLogs = ::testing::AddGlobalTestEnvironment(new QuietLogs);

// Rows 0, 1, ..., n-1 as a column of doubles, so a batch's first value names its first row.
torch::Tensor rows(int64_t n) { return torch::arange(n, torch::kFloat64).unsqueeze(1); }

int64_t first_row(const downhill::Batch& batch) {
  return static_cast<int64_t>(batch[0][0][0].item<double>());
}

std::vector<int64_t> iota_vector(int64_t n) {
  std::vector<int64_t> out(static_cast<size_t>(n));
  std::iota(out.begin(), out.end(), 0);
  return out;
}

bool is_permutation_of_iota(std::vector<int64_t> order) {
  std::sort(order.begin(), order.end());
  return order == iota_vector(static_cast<int64_t>(order.size()));
}

template <typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Dataset, FortyRowsInBatchesOfElevenGiveThreeFullSlicesAndOneOfSeven) {
  downhill::Dataset data({rows(40)}, downhill::DatasetOptions().batch_size(11));
  ASSERT_EQ(data.slice_count(), 4);
  EXPECT_EQ(data.iteration_size(), 4);
  std::multiset<int64_t> sizes;
  std::set<int64_t> starts;
  for (int64_t b = 0; b < data.iteration_size(); ++b) {
    const auto batch = data.next();
    ASSERT_EQ(batch.size(), 1u);
    const int64_t size = batch[0].size(0);
    const int64_t start = first_row(batch);
    sizes.insert(size);
    starts.insert(start);
    // Contiguous: rows start, start+1, ..., start+size-1.
    EXPECT_TRUE(torch::equal(batch[0], rows(40).narrow(0, start, size)));
    EXPECT_EQ(data.samples(batch), size);
  }
  EXPECT_EQ(sizes, (std::multiset<int64_t>{7, 11, 11, 11}));
  EXPECT_EQ(starts, (std::set<int64_t>{0, 11, 22, 33}));
}

TEST(Dataset, BatchSizeZeroOrNegativeGivesOneSliceOfEverything) {
  for (const int64_t batch_size : {0, -1, -32}) {
    SCOPED_TRACE("batch_size " + std::to_string(batch_size));
    downhill::Dataset data({rows(40)}, downhill::DatasetOptions().batch_size(batch_size));
    EXPECT_EQ(data.slice_count(), 1);
    EXPECT_EQ(data.iteration_size(), 1);
    const auto batch = data.next();
    EXPECT_EQ(batch[0].size(0), 40);
    EXPECT_TRUE(torch::equal(batch[0], rows(40)));
  }
}

TEST(Dataset, PassesContinueWhereTheLastStoppedAndReshuffleOnlyAtTheWrap) {
  auto generator = at::detail::createCPUGenerator(1234);
  downhill::Dataset data(
      {rows(8)}, downhill::DatasetOptions().batch_size(1).iteration_size(3).generator(generator));
  ASSERT_EQ(data.slice_count(), 8);
  ASSERT_EQ(data.iteration_size(), 3);
  const std::vector<int64_t> first_order = data.order();
  ASSERT_TRUE(is_permutation_of_iota(first_order));

  // Passes one and two: slices 0-2 and 3-5 of the initial order, which stays put.
  std::vector<int64_t> seen;
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t b = 0; b < data.iteration_size(); ++b) seen.push_back(first_row(data.next()));
    EXPECT_EQ(data.order(), first_order) << "reshuffled before the wrap, in pass " << pass + 1;
  }
  EXPECT_EQ(seen, std::vector<int64_t>(first_order.begin(), first_order.begin() + 6));

  // Pass three: slices 6 and 7, then the wrap reshuffles and the first of the new order comes.
  EXPECT_EQ(first_row(data.next()), first_order[6]);
  EXPECT_EQ(data.order(), first_order);
  EXPECT_EQ(first_row(data.next()), first_order[7]);
  const std::vector<int64_t> second_order = data.order();
  EXPECT_TRUE(is_permutation_of_iota(second_order));
  // With this seed the new permutation differs from the first (1 chance in 8! otherwise).
  EXPECT_NE(second_order, first_order);
  EXPECT_EQ(first_row(data.next()), second_order[0]);
  EXPECT_EQ(data.position(), 1);
}

TEST(Dataset, TheSameSeedGivesTheSameOrder) {
  auto orders_after_seed = [](uint64_t seed) {
    torch::manual_seed(seed);
    downhill::Dataset data({rows(50)}, downhill::DatasetOptions().batch_size(5));
    std::vector<int64_t> starts;
    // Two full rounds, so the reshuffle at the wrap is covered too.
    for (int64_t b = 0; b < 2 * data.slice_count(); ++b) starts.push_back(first_row(data.next()));
    return starts;
  };
  const auto first = orders_after_seed(42);
  EXPECT_EQ(orders_after_seed(42), first);
  // Guard against an order that ignores the seed altogether (e.g. never shuffled).
  EXPECT_NE(orders_after_seed(43), first);
}

TEST(Dataset, AnExplicitGeneratorMakesTheOrderRepeatable) {
  auto order_with = [](uint64_t seed) {
    downhill::Dataset data({rows(30)}, downhill::DatasetOptions().batch_size(3).generator(
                                           at::detail::createCPUGenerator(seed)));
    return data.order();
  };
  torch::manual_seed(1);
  const auto first = order_with(7);
  torch::manual_seed(2);  // the global generator must not matter
  EXPECT_EQ(order_with(7), first);
}

TEST(Dataset, WithoutShuffleTheOrderIsTheSliceOrderEveryRound) {
  downhill::Dataset data({rows(10)}, downhill::DatasetOptions().batch_size(3).shuffle(false));
  EXPECT_EQ(data.order(), iota_vector(4));
  std::vector<int64_t> starts;
  for (int b = 0; b < 8; ++b) starts.push_back(first_row(data.next()));
  EXPECT_EQ(starts, (std::vector<int64_t>{0, 3, 6, 9, 0, 3, 6, 9}));
}

TEST(Dataset, BatchesAreViewsOfTheInputStorage) {
  auto features = torch::arange(24, torch::kFloat32).reshape({12, 2});
  auto labels = torch::arange(12, torch::kInt64);
  downhill::Dataset data({features, labels},
                         downhill::DatasetOptions().batch_size(5).shuffle(false));
  const auto batch = data.next();  // rows 0..4
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_TRUE(batch[0].is_alias_of(features));
  EXPECT_TRUE(batch[1].is_alias_of(labels));
  EXPECT_EQ(batch[0].data_ptr(), features.data_ptr());

  const auto second = data.next();  // rows 5..9, at an offset inside the same storage
  EXPECT_TRUE(second[0].is_alias_of(features));
  EXPECT_EQ(static_cast<const char*>(second[0].data_ptr()),
            static_cast<const char*>(features.data_ptr()) + 5 * 2 * sizeof(float));

  // Writing the input shows in the batches already handed out.
  features[6][1] = -1.0f;
  labels[3] = 99;
  EXPECT_EQ(second[0][1][1].item<float>(), -1.0f);
  EXPECT_EQ(batch[1][3].item<int64_t>(), 99);
}

TEST(Dataset, SplitsAlongAxisOneAndAlongANegativeAxis) {
  // Samples are columns: 3 features by 10 samples.
  auto samples = torch::arange(30, torch::kFloat64).reshape({3, 10});
  for (const int64_t axis : {1, -1}) {
    SCOPED_TRACE("axis " + std::to_string(axis));
    downhill::Dataset data({samples},
                           downhill::DatasetOptions().batch_size(4).axis(axis).shuffle(false));
    ASSERT_EQ(data.slice_count(), 3);
    const std::vector<int64_t> expected_sizes = {4, 4, 2};
    for (int64_t b = 0; b < 3; ++b) {
      const auto batch = data.next();
      EXPECT_EQ(batch[0].size(0), 3);
      EXPECT_EQ(batch[0].size(1), expected_sizes[static_cast<size_t>(b)]);
      EXPECT_EQ(data.samples(batch), expected_sizes[static_cast<size_t>(b)]);
      EXPECT_TRUE(torch::equal(batch[0], samples.narrow(1, 4 * b, expected_sizes[b])));
    }
  }
}

TEST(Dataset, MismatchedLengthsNameEveryShape) {
  const auto message = message_of([] {
    downhill::Dataset data({torch::zeros({5, 2}), torch::zeros({5, 3}), torch::zeros({6})});
  });
  ASSERT_FALSE(message.empty()) << "no std::invalid_argument for lengths 5, 5 and 6";
  EXPECT_NE(message.find("[5, 2]"), std::string::npos) << message;
  EXPECT_NE(message.find("[5, 3]"), std::string::npos) << message;
  EXPECT_NE(message.find("[6]"), std::string::npos) << message;
}

TEST(Dataset, AnAxisOutOfRangeIsRefused) {
  for (const int64_t axis : {2, 5, -3}) {
    SCOPED_TRACE("axis " + std::to_string(axis));
    EXPECT_THROW(downhill::Dataset({torch::zeros({4, 3})}, downhill::DatasetOptions().axis(axis)),
                 std::invalid_argument);
  }
  // A scalar has no axis to split along.
  EXPECT_THROW(downhill::Dataset({torch::tensor(1.0)}), std::invalid_argument);
}

TEST(Dataset, AnEmptyTensorIsRefused) {
  EXPECT_THROW(downhill::Dataset({torch::zeros({0, 3})}), std::invalid_argument);
  EXPECT_THROW(downhill::Dataset({torch::zeros({4, 3}), torch::zeros({4, 0})}),
               std::invalid_argument);
}

TEST(Dataset, ANonPositiveIterationSizeIsRefused) {
  EXPECT_THROW(downhill::Dataset({rows(4)}, downhill::DatasetOptions().iteration_size(0)),
               std::invalid_argument);
  EXPECT_THROW(downhill::Dataset([] { return downhill::Batch{rows(1)}; },
                                 downhill::DatasetOptions().iteration_size(-1)),
               std::invalid_argument);
}

// A loss over one batch that needs no gradient of its own: the optimizer is only
// used to run evaluate() and the loop over generator datasets.
struct CountingGenerator {
  int calls = 0;
  downhill::Batch operator()() {
    ++calls;
    return {torch::full({2}, static_cast<double>(calls), torch::kFloat64)};
  }
};

TEST(Dataset, AGeneratorIsCalledIterationSizeTimesPerPass) {
  auto w = torch::zeros({1}, torch::dtype(torch::kFloat64).requires_grad(true));
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    return (batch[0].sum() * w).sum();
  };
  auto opt = downhill::build("sgd", loss, {{"w", w}}, downhill::Options().learning_rate(0.1));

  CountingGenerator defaults;
  downhill::Dataset default_data(std::ref(defaults));
  EXPECT_EQ(default_data.iteration_size(), 100);
  opt->evaluate(default_data);
  EXPECT_EQ(defaults.calls, 100);
  opt->evaluate(default_data);
  EXPECT_EQ(defaults.calls, 200);

  // In the loop: one validation pass of 2 and one training pass of 5.
  CountingGenerator train_calls, valid_calls;
  downhill::Dataset train(std::ref(train_calls), downhill::DatasetOptions().iteration_size(5));
  downhill::Dataset valid(std::ref(valid_calls), downhill::DatasetOptions().iteration_size(2));
  auto looped = downhill::build("sgd", loss, {{"w", w}},
                                downhill::Options().learning_rate(0.1).max_updates(3));
  int passes = 0;
  for (const auto& item : looped->iterate(train, &valid)) {
    (void)item;
    ++passes;
    EXPECT_EQ(train_calls.calls, 5 * passes);
  }
  EXPECT_EQ(passes, 3);
  EXPECT_EQ(train_calls.calls, 15);
  // validate_every 10: at pass 0, and once more when max_updates ends the run.
  EXPECT_EQ(valid_calls.calls, 4);
}

TEST(Dataset, AGeneratorReturningAnEmptyBatchIsRefused) {
  downhill::Dataset data([] { return downhill::Batch{}; });
  EXPECT_THROW(data.next(), std::invalid_argument);
}

TEST(Dataset, AGeneratorChangingItsNumberOfTensorsIsRefused) {
  int calls = 0;
  downhill::Dataset data([&calls] {
    ++calls;
    return calls == 1 ? downhill::Batch{rows(2)} : downhill::Batch{rows(2), rows(2)};
  });
  EXPECT_NO_THROW(data.next());
  EXPECT_THROW(data.next(), std::invalid_argument);
}

TEST(Dataset, ADatasetOfNoTensorsGivesEmptyBatches) {
  downhill::Dataset single{downhill::Batch{}};
  EXPECT_EQ(single.iteration_size(), 1);
  const auto batch = single.next();
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(single.samples(batch), 1);

  downhill::Dataset several(downhill::Batch{}, downhill::DatasetOptions().iteration_size(4));
  EXPECT_EQ(several.iteration_size(), 4);
  for (int b = 0; b < 9; ++b) EXPECT_TRUE(several.next().empty());
}

TEST(Dataset, SamplesIsTheLengthAlongTheAxis) {
  downhill::Dataset by_rows({torch::zeros({7, 3})});
  EXPECT_EQ(by_rows.samples({torch::zeros({7, 3})}), 7);
  EXPECT_EQ(by_rows.samples({torch::zeros({2, 9}), torch::zeros({2})}), 2);
  downhill::Dataset by_columns({torch::zeros({7, 3})}, downhill::DatasetOptions().axis(1));
  EXPECT_EQ(by_columns.samples({torch::zeros({7, 3})}), 3);
  EXPECT_EQ(by_columns.samples({}), 1);
}

TEST(Dataset, OptionsAreKept) {
  downhill::Dataset data({rows(6)}, downhill::DatasetOptions().name("valid").batch_size(2));
  EXPECT_EQ(data.name(), "valid");
  EXPECT_EQ(data.options().batch_size(), 2);
  EXPECT_TRUE(data.options().shuffle());
  EXPECT_EQ(data.options().axis(), 0);
}

}  // namespace
