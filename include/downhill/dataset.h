#pragma once
// Mini-batches from tensors or from a generator callable (docs/guide.md's datasets).

#include <downhill/batch.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace downhill {

/// Settings of a Dataset, chainable: `DatasetOptions().batch_size(64).shuffle(false)`.
class DatasetOptions {
 public:
  /// Name used in log lines ("train", "valid", ...).
  DatasetOptions& name(std::string value) {
    name_ = std::move(value);
    return *this;
  }
  const std::string& name() const noexcept { return name_; }
  /// Samples per batch; <= 0 means one batch of everything. Default 32.
  DatasetOptions& batch_size(int64_t value) {
    batch_size_ = value;
    return *this;
  }
  int64_t batch_size() const noexcept { return batch_size_; }
  /// Batches per pass; >= 1. Default: the number of slices (100 for a generator,
  /// 1 for a dataset of no tensors, one walk of the range for a range's).
  DatasetOptions& iteration_size(int64_t value) {
    iteration_size_ = value;
    return *this;
  }
  const std::optional<int64_t>& iteration_size() const noexcept { return iteration_size_; }
  /// The axis along which tensors are split into batches. Default 0; negative counts from the end.
  /// Sparse COO tensors are split along axis 0 only.
  DatasetOptions& axis(int64_t value) {
    axis_ = value;
    return *this;
  }
  int64_t axis() const noexcept { return axis_; }
  /// Shuffle the slice order at construction and at each wrap-around. Default true.
  DatasetOptions& shuffle(bool value) {
    shuffle_ = value;
    return *this;
  }
  bool shuffle() const noexcept { return shuffle_; }
  /// With shuffle(true), draw a fresh permutation of the samples at construction and at
  /// each wrap-around, and gather each batch from it (as PyTorch's
  /// `DataLoader(shuffle=true)`), instead of shuffling the order of fixed contiguous
  /// slices. Batches are then copies, not views. Default false (downhill's slices).
  DatasetOptions& shuffle_samples(bool value) {
    shuffle_samples_ = value;
    return *this;
  }
  bool shuffle_samples() const noexcept { return shuffle_samples_; }
  /// Generator for the shuffling. Default: LibTorch's global generator.
  DatasetOptions& generator(torch::Generator value) {
    generator_ = std::move(value);
    return *this;
  }
  const std::optional<torch::Generator>& generator() const noexcept { return generator_; }

 private:
  std::string name_ = "data";
  int64_t batch_size_ = 32;
  std::optional<int64_t> iteration_size_;
  int64_t axis_ = 0;
  bool shuffle_ = true;
  bool shuffle_samples_ = false;
  std::optional<torch::Generator> generator_;
};

/// Mini-batches for training or validation.
///
/// From tensors: every tensor is split along `axis` into contiguous slices of
/// `batch_size` (views, not copies); the slice order is shuffled at construction
/// and again at each wrap-around; each pass yields `iteration_size` batches and
/// continues where the previous pass stopped. From a generator: each batch is a
/// call to the generator. A dataset of no tensors (`Dataset(Batch{})`) yields
/// empty batches, for losses that need no data.
///
/// From a range (from_range() in range_dataset.h: a torch::data DataLoader, a vector of
/// batches, ...): each pass is one walk of the range from its beginning to its end, or, with
/// iteration_size set, that many batches, a walk that ends starting the next.
///
/// A sparse COO tensor (layout torch::kSparse), alone or beside dense ones, is split
/// along axis 0 only: it is coalesced once, and each of its batches is a coalesced
/// sparse COO tensor of its rows (values shared with the coalesced tensor, indices
/// its own).
class Dataset {
 public:
  /// Splits `arrays` into batches. Throws std::invalid_argument when lengths along
  /// the axis differ (listing every shape), the axis is out of range, a tensor is empty,
  /// has a layout other than dense (strided) or sparse COO, or is sparse COO and would be
  /// split along another axis than 0.
  explicit Dataset(Batch arrays, DatasetOptions options = {});
  /// Calls `generator` for each batch.
  explicit Dataset(std::function<Batch()> generator, DatasetOptions options = {});

  /// One walk of a range: each call gives its next batch, and std::nullopt at its end.
  using Walk = std::function<std::optional<Batch>()>;
  /// Batches from walks of a range, each begun by `start_walk` (from_range() in
  /// range_dataset.h builds one from any range). Throws std::invalid_argument when
  /// `start_walk` is empty; a walk that yields no batch at all is refused when it is walked.
  static Dataset of_walks(std::function<Walk()> start_walk, DatasetOptions options = {});

  const std::string& name() const noexcept { return options_.name(); }
  const DatasetOptions& options() const noexcept { return options_; }
  /// Batches in one pass. A range's without iteration_size set: the length of its latest
  /// complete walk, 0 until one has ended.
  int64_t iteration_size() const noexcept { return iteration_size_; }
  /// Whether a pass that has taken `batches` batches is over: at iteration_size() batches, or,
  /// for a range without iteration_size set, at the end of its walk (a pass that has taken
  /// none starts a new walk). May start a walk, or take the next batch ahead, as peek() does.
  bool pass_over(int64_t batches);
  /// Whether the batches come from walks of a range (of_walks(), from_range()).
  bool walks() const noexcept { return static_cast<bool>(start_walk_); }
  /// Number of slices, i.e. batches in one round of the data (tensor datasets; 1 for a
  /// dataset of no tensors, 0 for a generator or a range).
  int64_t slice_count() const noexcept { return static_cast<int64_t>(slices_.size()); }
  /// The current order: indices into the slices, or, with shuffle_samples, into the
  /// samples (batch k holds samples order()[k·batch_size, (k+1)·batch_size)).
  const std::vector<int64_t>& order() const noexcept { return order_; }
  /// Index of the next batch in this round of the data, in [0, slice_count()) (tensor
  /// datasets); for a range, the batches taken from the walk in progress (0 when none is).
  int64_t position() const noexcept { return position_; }

  /// Puts the dataset where a checkpoint found it: `order` must be a permutation of
  /// the slices (of the samples, with shuffle_samples) and `position` the index of a
  /// batch. Throws std::invalid_argument, changing nothing, otherwise. A range's order is
  /// empty, and its position is reached by starting a new walk and dropping that many
  /// batches (the same batches for a range of fixed order, others for a shuffling one).
  void restore_position(std::vector<int64_t> order, int64_t position);
  /// Throws the std::invalid_argument restore_position(order, position) would, changing
  /// nothing; returns normally when they fit.
  void check_position(const std::vector<int64_t>& order, int64_t position) const;

  /// Data-parallel sharding (docs/guide.md, "Scaling out"): of `world_size` ranks, this
  /// one's k-th next() of a tensor dataset takes batch k·world_size + rank of the order (all
  /// ranks keep the same order and advance it alike), and iteration_size, when not set,
  /// becomes ⌈slice_count() / world_size⌉. A generator dataset is not sharded: each rank's
  /// generator draws its own batches. A data-parallel loop calls it when each run starts;
  /// shard(0, 1) undoes it. Throws std::invalid_argument unless 0 <= rank < world_size.
  void shard(int64_t rank, int64_t world_size);
  /// This rank and the number of ranks set by shard() (0 and 1 by default).
  int64_t shard_rank() const noexcept { return shard_rank_; }
  int64_t shard_count() const noexcept { return shard_count_; }

  /// The next batch, wrapping around (and reshuffling) at the end.
  Batch next();
  /// The batch next() would return, without consuming it. (Sharded, when this rank's batch
  /// lies past the end of the order, the one at that place of the current order: the next
  /// order is drawn only when next() gets there.)
  const Batch& peek();
  /// The weight of a batch when averaging monitors: its length along the axis
  /// (1 for an empty batch).
  int64_t samples(const Batch& batch) const;

 private:
  explicit Dataset(DatasetOptions options) : options_(std::move(options)) {}
  void reshuffle();
  // std::invalid_argument unless `batch` holds as many tensors as the first (at least one);
  // `source` names where it came from ("the generator", "the range").
  void check_arity(const Batch& batch, const char* source);
  // The walk's next batch into peeked_, starting a walk when none is in progress (dropping
  // the batches a restored position skips); false when the walk has ended.
  bool fetch_from_walk();
  bool gathers() const noexcept { return !arrays_.empty(); }
  Batch gather(int64_t batch_index);

  DatasetOptions options_;
  std::vector<Batch> slices_;
  // With shuffle_samples: the whole tensors (sparse COO ones coalesced), the sample order
  // as a tensor (for index_select), and one reusable output buffer per dense tensor and
  // batch length.
  Batch arrays_;
  // With shuffle_samples, per tensor of arrays_: for a sparse COO one, where each row's
  // entries begin (rows [a, b) are entries [starts[a], starts[b])); undefined for a dense one.
  std::vector<torch::Tensor> row_starts_;
  torch::Tensor sample_order_;
  std::vector<Batch> gather_buffers_;
  std::function<Batch()> generator_;
  std::function<Walk()> start_walk_;
  Walk walk_;              // the walk in progress; empty when none is
  int64_t walk_skip_ = 0;  // batches the next walk drops (a restored position)
  std::optional<Batch> peeked_;
  int64_t generated_arity_ = -1;
  std::vector<int64_t> order_;
  int64_t position_ = 0;
  int64_t iteration_size_ = 0;
  int64_t shard_rank_ = 0;
  int64_t shard_count_ = 1;
};

}  // namespace downhill
