// Datasets of sparse COO tensors (docs/guide.md's "Sparse data"): sliced along axis 0 like
// dense ones, yielding coalesced sparse batches equal to the dense dataset's batches, with
// and without per-sample shuffling, mixed with dense tensors, refused along another axis or
// in another sparse layout, and trained on through torch::mm.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using downhill::testing::message_of;

// Silences downhill's logger while the tests run and puts the previous level back after.
class QuietLogs : public ::testing::Environment {
 public:
  void SetUp() override { quiet_.emplace(spdlog::level::off); }
  void TearDown() override { quiet_.reset(); }

 private:
  std::optional<downhill::testing::ScopedLogLevel> quiet_;
};
[[maybe_unused]] const auto* const kQuietLogs = ::testing::AddGlobalTestEnvironment(new QuietLogs);

// A float64 tensor of `shape` whose entries are nonzero with probability `density`; the mask
// has the shape's first `masked_dims` dimensions (broadcast over the rest), so that a hybrid
// tensor's dense trailing dimensions are all nonzero or all zero together.
torch::Tensor random_dense(std::vector<int64_t> shape, double density, int64_t masked_dims,
                           uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  const auto values = torch::randn(shape, generator, torch::kDouble);
  std::vector<int64_t> mask_shape = shape;
  for (size_t d = static_cast<size_t>(masked_dims); d < mask_shape.size(); ++d) mask_shape[d] = 1;
  const auto mask = torch::rand(mask_shape, generator, torch::kDouble) < density;
  return values * mask;
}

// `sparse` rebuilt from its entries in a scrambled order, with every entry split in two
// halves at the same index: an uncoalesced tensor of the same value.
torch::Tensor uncoalesced(const torch::Tensor& sparse, uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  const auto c = sparse.coalesce();
  const auto scramble = torch::randperm(c._nnz(), generator, torch::kLong);
  const auto indices = c._indices().index_select(1, scramble);
  const auto values = c._values().index_select(0, scramble);
  return torch::sparse_coo_tensor(torch::cat({indices, indices}, 1),
                                  torch::cat({values * 0.25, values * 0.75}, 0), c.sizes());
}

// True when `t` is a sparse COO tensor marked coalesced whose entries really are: sorted by
// index without duplicates (what coalesce() of the same entries gives).
::testing::AssertionResult is_coalesced_sparse(const torch::Tensor& t) {
  if (t.layout() != torch::kSparse) {
    return ::testing::AssertionFailure() << "layout " << t.layout() << ", not Sparse";
  }
  if (!t.is_coalesced()) return ::testing::AssertionFailure() << "not marked coalesced";
  const auto recomputed =
      torch::sparse_coo_tensor(t._indices().clone(), t._values().clone(), t.sizes()).coalesce();
  if (!torch::equal(recomputed._indices(), t._indices()) ||
      !torch::equal(recomputed._values(), t._values())) {
    return ::testing::AssertionFailure() << "marked coalesced, but its entries are not";
  }
  return ::testing::AssertionSuccess();
}

struct Case {
  std::string name;
  torch::Tensor sparse;
  int64_t batch_size;
  bool shuffle;
  bool shuffle_samples;
};

downhill::DatasetOptions options_of(const Case& c) {
  return downhill::DatasetOptions()
      .batch_size(c.batch_size)
      .shuffle(c.shuffle)
      .shuffle_samples(c.shuffle_samples)
      .generator(at::detail::createCPUGenerator(1234));
}

// Two passes and a half over both datasets: each sparse batch is coalesced sparse COO and its
// to_dense() equals the dense dataset's batch, in the same order at the same positions.
void expect_same_batches(const Case& c, const std::optional<torch::Tensor>& labels = {}) {
  SCOPED_TRACE(c.name + ", batch_size " + std::to_string(c.batch_size) +
               (c.shuffle ? ", shuffled" : ", in order") +
               (c.shuffle_samples ? " samples" : " slices"));
  const auto dense = c.sparse.to_dense();
  downhill::Batch sparse_arrays{c.sparse};
  downhill::Batch dense_arrays{dense};
  if (labels) {
    sparse_arrays.push_back(*labels);
    dense_arrays.push_back(*labels);
  }
  downhill::Dataset sparse_data(sparse_arrays, options_of(c));
  downhill::Dataset dense_data(dense_arrays, options_of(c));
  ASSERT_EQ(sparse_data.slice_count(), dense_data.slice_count());
  ASSERT_EQ(sparse_data.iteration_size(), dense_data.iteration_size());
  const int64_t rows = c.sparse.size(0);
  const int64_t steps = 2 * sparse_data.slice_count() + sparse_data.slice_count() / 2 + 1;
  int64_t rows_seen = 0;
  for (int64_t step = 0; step < steps; ++step) {
    SCOPED_TRACE("batch " + std::to_string(step));
    ASSERT_EQ(sparse_data.order(), dense_data.order());
    ASSERT_EQ(sparse_data.position(), dense_data.position());
    const auto peeked = sparse_data.peek();
    const auto batch = sparse_data.next();
    const auto expected = dense_data.next();
    ASSERT_EQ(batch.size(), expected.size());
    ASSERT_TRUE(is_coalesced_sparse(batch[0]));
    EXPECT_EQ(batch[0].sparse_dim(), c.sparse.sparse_dim());
    EXPECT_EQ(batch[0].dense_dim(), c.sparse.dense_dim());
    EXPECT_EQ(batch[0].sizes(), expected[0].sizes());
    EXPECT_TRUE(torch::equal(batch[0].to_dense(), expected[0]));
    EXPECT_TRUE(torch::equal(peeked[0].to_dense(), expected[0])) << "peek() differs from next()";
    EXPECT_EQ(sparse_data.samples(batch), dense_data.samples(expected));
    EXPECT_EQ(sparse_data.samples(batch), expected[0].size(0));
    if (labels) {
      EXPECT_EQ(batch[1].layout(), torch::kStrided);
      EXPECT_TRUE(torch::equal(batch[1], expected[1]));
    }
    if (step < sparse_data.slice_count()) rows_seen += sparse_data.samples(batch);
  }
  EXPECT_EQ(rows_seen, rows) << "one round of the data is not every row once";
}

std::vector<Case> cases_for(const std::string& name, const torch::Tensor& sparse,
                            const std::vector<int64_t>& batch_sizes) {
  std::vector<Case> cases;
  for (const int64_t batch_size : batch_sizes) {
    cases.push_back({name, sparse, batch_size, false, false});
    cases.push_back({name, sparse, batch_size, true, false});
    cases.push_back({name, sparse, batch_size, true, true});
    cases.push_back({name, sparse, batch_size, false, true});
  }
  return cases;
}

// [100, 30], about 5% nonzero; 10 divides the rows, 32 and 7 do not, 0 is everything.
TEST(SparseDataset, TwoDimensionalBatchesEqualTheDenseBatches) {
  const auto sparse = random_dense({100, 30}, 0.05, 2, 1).to_sparse();
  ASSERT_GT(sparse._nnz(), 0);
  for (const auto& c : cases_for("[100, 30]", sparse, {10, 32, 7, 1, 0, 100, 250})) {
    expect_same_batches(c);
  }
}

// The same data given uncoalesced (scrambled, duplicated entries): coalesced once, then the
// same batches.
TEST(SparseDataset, AnUncoalescedTensorGivesTheSameBatches) {
  const auto sparse = uncoalesced(random_dense({100, 30}, 0.05, 2, 2).to_sparse(), 3);
  ASSERT_FALSE(sparse.is_coalesced());
  for (const auto& c : cases_for("uncoalesced [100, 30]", sparse, {32, 0})) {
    expect_same_batches(c);
  }
}

// Rows with no entries at all, at the start, in the middle and at the end, give batches with
// none: [50, 8] whose nonzero rows are 10..19 and 30..34.
TEST(SparseDataset, EmptyRowsAndEmptyBatchesStaySparse) {
  auto dense = torch::zeros({50, 8}, torch::kDouble);
  dense.narrow(0, 10, 10).copy_(random_dense({10, 8}, 0.3, 2, 4));
  dense.narrow(0, 30, 5).copy_(random_dense({5, 8}, 0.5, 2, 5));
  for (const auto& c : cases_for("rows 10-19, 30-34", dense.to_sparse(), {5, 6, 0})) {
    expect_same_batches(c);
  }
  // A sparse tensor with no entries at all.
  const auto nothing = torch::zeros({12, 3}, torch::kDouble).to_sparse();
  for (const auto& c : cases_for("no entries", nothing, {5})) expect_same_batches(c);
}

// Three dimensions: all sparse, and hybrid ([60, 7] sparse by [4] dense, made with
// sparse_coo_tensor from indices and values, uncoalesced).
TEST(SparseDataset, ThreeDimensionalAndHybridBatchesEqualTheDenseBatches) {
  const auto full = random_dense({40, 5, 6}, 0.05, 3, 6).to_sparse();
  ASSERT_EQ(full.sparse_dim(), 3);
  for (const auto& c : cases_for("[40, 5, 6] sparse", full, {8, 9, 0})) expect_same_batches(c);

  const auto entries = random_dense({60, 7, 4}, 0.1, 2, 7).to_sparse(2);
  ASSERT_EQ(entries.dense_dim(), 1);
  const auto hybrid = uncoalesced(entries, 8);
  ASSERT_EQ(hybrid.sparse_dim(), 2);
  ASSERT_EQ(hybrid.dense_dim(), 1);
  for (const auto& c : cases_for("[60, 7 | 4] hybrid", hybrid, {7, 60})) expect_same_batches(c);

  // Float values stay float.
  const auto floats = random_dense({30, 6}, 0.2, 2, 9).to(torch::kFloat).to_sparse();
  for (const auto& c : cases_for("float [30, 6]", floats, {4})) expect_same_batches(c);
}

// {sparse features, dense labels}: the rows stay together.
TEST(SparseDataset, MixedSparseAndDenseTensorsStayAligned) {
  const auto dense = random_dense({100, 30}, 0.05, 2, 10);
  const auto labels = dense.sum(1);
  for (const auto& c : cases_for("{[100, 30], [100]}", dense.to_sparse(), {32, 10})) {
    expect_same_batches(c, labels);
  }
  downhill::Dataset data({dense.to_sparse(), labels},
                         downhill::DatasetOptions().batch_size(16).shuffle_samples(true));
  for (int b = 0; b < 10; ++b) {
    const auto batch = data.next();
    EXPECT_TRUE(torch::allclose(batch[0].to_dense().sum(1), batch[1])) << "batch " << b;
  }
  // Dense first, sparse second: samples() counts the rows of either.
  downhill::Dataset flipped({labels, dense.to_sparse()},
                            downhill::DatasetOptions().batch_size(32).shuffle(false));
  const auto batch = flipped.next();
  EXPECT_EQ(flipped.samples(batch), 32);
  EXPECT_TRUE(is_coalesced_sparse(batch[1]));
  EXPECT_TRUE(torch::equal(batch[1].to_dense(), dense.narrow(0, 0, 32)));
}

// A batch handed out never changes afterwards, whatever the dataset gives next.
TEST(SparseDataset, HeldBatchesNeverChange) {
  const auto sparse = random_dense({40, 10}, 0.2, 2, 11).to_sparse();
  for (const bool samples : {false, true}) {
    downhill::Dataset data({sparse},
                           downhill::DatasetOptions().batch_size(8).shuffle_samples(samples));
    const auto held = data.next();
    const auto held_dense = held[0].to_dense();
    for (int b = 0; b < 12; ++b) data.next();
    EXPECT_TRUE(torch::equal(held[0].to_dense(), held_dense));
  }
}

// Positions and orders restored into a sparse dataset give the batches the dense dataset
// gives from the same position.
TEST(SparseDataset, RestorePositionGivesTheSameBatchesAsDense) {
  const auto sparse = random_dense({100, 30}, 0.05, 2, 12).to_sparse();
  const auto dense = sparse.to_dense();
  for (const bool samples : {false, true}) {
    SCOPED_TRACE(samples ? "samples" : "slices");
    const auto options = downhill::DatasetOptions().batch_size(32).shuffle_samples(samples);
    downhill::Dataset source(
        {dense}, downhill::DatasetOptions(options).generator(at::detail::createCPUGenerator(5)));
    for (int b = 0; b < 2; ++b) source.next();
    downhill::Dataset target(
        {sparse}, downhill::DatasetOptions(options).generator(at::detail::createCPUGenerator(6)));
    target.restore_position(source.order(), source.position());
    for (int b = 0; b < 2; ++b) {
      EXPECT_TRUE(torch::equal(target.next()[0].to_dense(), source.next()[0]));
    }
    EXPECT_THROW(target.restore_position({0, 1}, 0), std::invalid_argument);
  }
}

TEST(SparseDataset, AnotherAxisIsRefusedNamingTheTensorAndTheLayout) {
  const auto sparse = random_dense({10, 4}, 0.3, 2, 13).to_sparse();
  const auto refusal = [&](downhill::Batch arrays, int64_t axis) {
    return message_of<std::invalid_argument>([&] {
      downhill::Dataset data(std::move(arrays),
                             downhill::DatasetOptions().name("train").axis(axis));
    });
  };
  EXPECT_EQ(refusal({sparse}, 1),
            "downhill: dataset 'train': tensor 0 of shape [10, 4] has layout torch::kSparse "
            "(sparse COO), which is split along axis 0 only, not along axis 1; allowed for it: "
            "axis 0 (or -2)");
  // -1 is the dense labels' axis 0, but the sparse features' axis 1.
  EXPECT_EQ(refusal({torch::zeros({4}), torch::zeros({4, 10}).to_sparse().t()}, -1),
            "downhill: dataset 'train': tensor 1 of shape [10, 4] has layout torch::kSparse "
            "(sparse COO), which is split along axis 0 only, not along axis -1; allowed for it: "
            "axis 0 (or -2)");
  // Axis 0 counted from the end is axis 0.
  downhill::Dataset data({sparse}, downhill::DatasetOptions().axis(-2).batch_size(3));
  EXPECT_EQ(data.slice_count(), 4);
}

TEST(SparseDataset, OtherSparseLayoutsAreRefusedByName) {
  const auto dense = random_dense({10, 4}, 0.3, 2, 14);
  EXPECT_EQ(message_of<std::invalid_argument>([&] {
              downhill::Dataset data({torch::zeros({10}), dense.to_sparse_csr()},
                                     downhill::DatasetOptions().name("train"));
            }),
            "downhill: dataset 'train': tensor 1 of shape [10, 4] has layout torch::kSparseCsr; "
            "allowed: torch::kStrided (dense) or torch::kSparse (sparse COO, split along axis 0)");
  // A sparse COO tensor whose axis 0 is a dense dimension (no sparse dimension at all).
  const auto all_dense = torch::sparse_coo_tensor(torch::zeros({0, 1}, torch::kLong),
                                                  torch::ones({1, 5}, torch::kDouble), {5});
  ASSERT_EQ(all_dense.sparse_dim(), 0);
  EXPECT_EQ(message_of<std::invalid_argument>([&] { downhill::Dataset data({all_dense}); }),
            "downhill: dataset 'data': tensor 0 of shape [5] has layout torch::kSparse (sparse "
            "COO) with no sparse dimension; allowed: a sparse COO tensor whose axis 0 is sparse "
            "(sparse_dim() >= 1)");
}

// Linear regression y ≈ X w on X sparse [200, 20] (10% nonzero), its loss through torch::mm:
// the same run on the dense X (same order of the same batches) ends at the same w.
struct Regression {
  torch::Tensor x_dense = random_dense({200, 20}, 0.1, 2, 15);
  torch::Tensor x_sparse = x_dense.to_sparse();
  torch::Tensor w_true = torch::linspace(-1.0, 1.0, 20, torch::kDouble).unsqueeze(1);
  torch::Tensor y = torch::mm(x_dense, w_true).squeeze(1) +
                    0.01 * torch::randn({200}, at::detail::createCPUGenerator(16), torch::kDouble);
};

struct Trained {
  torch::Tensor w;
  double first_loss;
  double last_loss;
};

Trained train_with(const std::string& algo, downhill::Dataset& data) {
  auto w = torch::zeros({20, 1}, torch::dtype(torch::kDouble).requires_grad(true));
  const auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    return (torch::mm(batch[0], w).squeeze(1) - batch[1]).square().mean();
  };
  const auto options =
      downhill::Options().learning_rate(0.05).max_updates(40).patience(1000).validate_every(1);
  auto optimizer = downhill::build(algo, loss, {{"w", w}}, options);
  std::vector<double> losses;
  for (const auto& [training, validation] : optimizer->iterate(data)) {
    losses.push_back(training.at("loss"));
  }
  return {w.detach().clone(), losses.front(), losses.back()};
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, double relative) {
  const double scale = b.abs().max().item<double>();
  const double difference = (a - b).abs().max().item<double>();
  EXPECT_LE(difference, relative * scale) << "difference " << difference << ", scale " << scale;
}

TEST(SparseDataset, TrainingOnSparseDataMatchesTrainingOnDenseData) {
  const Regression problem;
  for (const std::string algo : {"sgd", "adam", "rmsprop"}) {
    for (const bool samples : {false, true}) {
      SCOPED_TRACE(algo + (samples ? ", shuffled samples" : ", shuffled slices"));
      const auto options = downhill::DatasetOptions().batch_size(24).shuffle_samples(samples);
      downhill::Dataset sparse_data(
          {problem.x_sparse, problem.y},
          downhill::DatasetOptions(options).generator(at::detail::createCPUGenerator(17)));
      downhill::Dataset dense_data(
          {problem.x_dense, problem.y},
          downhill::DatasetOptions(options).generator(at::detail::createCPUGenerator(17)));
      const auto on_sparse = train_with(algo, sparse_data);
      const auto on_dense = train_with(algo, dense_data);
      EXPECT_LT(on_sparse.last_loss, 0.2 * on_sparse.first_loss) << "did not train";
      EXPECT_NEAR(on_sparse.last_loss, on_dense.last_loss, 1e-6 * on_dense.last_loss);
      expect_close(on_sparse.w, on_dense.w, 1e-6);
    }
  }
}

// downhill::minimize wraps a Batch {sparse X, y} in a Dataset itself; with the global
// generator seeded alike, the sparse and the dense runs see the same batches.
TEST(SparseDataset, MinimizeWrapsASparseBatch) {
  const Regression problem;
  const auto run = [&](const torch::Tensor& x) {
    torch::manual_seed(18);
    auto w = torch::zeros({20, 1}, torch::dtype(torch::kDouble).requires_grad(true));
    const auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
      return (torch::mm(batch[0], w).squeeze(1) - batch[1]).square().mean();
    };
    const auto [training, validation] = downhill::minimize(
        loss, {{"w", w}}, downhill::Batch{x, problem.y},
        downhill::Options().algo("adam").learning_rate(0.05).batch_size(32).max_updates(30));
    return std::make_pair(w.detach().clone(), validation.at("loss"));
  };
  const auto [w_sparse, loss_sparse] = run(problem.x_sparse);
  const auto [w_dense, loss_dense] = run(problem.x_dense);
  EXPECT_LT(loss_sparse, 0.05);
  EXPECT_NEAR(loss_sparse, loss_dense, 1e-6 * loss_dense);
  expect_close(w_sparse, w_dense, 1e-6);
}

// A checkpointed run on sparse data resumes exactly: 3 passes, then 4 more from the file,
// equal 7 straight.
TEST(SparseDataset, ResumeFromACheckpointIsBitIdentical) {
  const Regression problem;
  const auto folder = std::filesystem::temp_directory_path() /
                      ("downhill_sparse_dataset_" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  const auto path = (folder / "run.ckpt").string();
  const auto run = [&](int64_t max_updates, bool resume, uint64_t seed) {
    auto w = torch::zeros({20, 1}, torch::dtype(torch::kDouble).requires_grad(true));
    downhill::Dataset train(
        {problem.x_sparse, problem.y},
        downhill::DatasetOptions().batch_size(24).iteration_size(3).shuffle_samples(true).generator(
            at::detail::createCPUGenerator(seed)));
    const auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
      return (torch::mm(batch[0], w).squeeze(1) - batch[1]).square().mean();
    };
    auto options =
        downhill::Options().algo("sgd").learning_rate(0.05).max_updates(max_updates).patience(100);
    if (resume) options.checkpoint(path).resume(true);
    auto optimizer = downhill::build("sgd", loss, {{"w", w}}, options);
    std::vector<double> losses;
    for (const auto& [training, validation] : optimizer->iterate(train)) {
      losses.push_back(training.at("loss"));
    }
    return std::make_pair(losses, w.detach().clone());
  };
  const auto straight = run(7, false, 21);
  ASSERT_EQ(straight.first.size(), 7u);
  ASSERT_EQ(run(3, true, 21).first.size(), 3u);
  const auto resumed = run(7, true, 999);  // another seed: the order must come from the file
  ASSERT_EQ(resumed.first.size(), 4u);
  for (size_t k = 0; k < 4; ++k) EXPECT_EQ(resumed.first[k], straight.first[k + 3]);
  EXPECT_TRUE(torch::equal(resumed.second, straight.second));
  std::filesystem::remove_all(folder);
}

}  // namespace
