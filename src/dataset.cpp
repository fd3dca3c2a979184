#include <ATen/ATen.h>
#include <downhill/dataset.h>

#include <algorithm>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataset_defaults.h"
#include "text.h"

namespace downhill {

using detail::shape_of;

namespace {

std::string shapes_of(const Batch& arrays) {
  std::string out;
  for (size_t i = 0; i < arrays.size(); ++i) {
    out += (i ? ", " : "") + std::string("tensor ") + std::to_string(i) + " " +
           (arrays[i].defined() ? shape_of(arrays[i]) : std::string("undefined"));
  }
  return out;
}

// std::invalid_argument unless `value` is unset or at least 1.
void check_iteration_size(const std::string& dataset, const std::optional<int64_t>& value) {
  if (value && *value < 1) {
    throw std::invalid_argument("downhill: dataset '" + dataset + "': iteration_size = " +
                                std::to_string(*value) + " is invalid; allowed: an integer >= 1");
  }
}

// "torch::kSparseCsr": a layout as LibTorch code names it.
std::string layout_name(c10::Layout layout) {
  std::ostringstream out;
  out << "torch::k" << layout;
  return out.str();
}

bool is_sparse_coo(const torch::Tensor& t) { return t.layout() == torch::kSparse; }

// The samples along `axis` that every tensor of `arrays` shares; std::invalid_argument
// naming the tensor when one is undefined, of a layout other than dense or sparse COO, a
// scalar, empty, too short in rank, sparse COO along another axis than 0 (or with no sparse
// dimension), or of another length.
int64_t sample_count(const std::string& dataset, const Batch& arrays, int64_t axis) {
  int64_t length = -1;
  for (size_t i = 0; i < arrays.size(); ++i) {
    const auto& t = arrays[i];
    const std::string tensor = "downhill: dataset '" + dataset + "': tensor " + std::to_string(i);
    if (!t.defined()) throw std::invalid_argument(tensor + " is undefined");
    if (t.layout() != torch::kStrided && !is_sparse_coo(t)) {
      throw std::invalid_argument(tensor + " of shape " + shape_of(t) + " has layout " +
                                  layout_name(t.layout()) +
                                  "; allowed: torch::kStrided (dense) or torch::kSparse (sparse "
                                  "COO, split along axis 0)");
    }
    const int64_t dim = t.dim();
    if (dim == 0) {
      throw std::invalid_argument(tensor +
                                  " is 0-dim (a scalar); it needs at least one dimension to split "
                                  "into batches along axis " +
                                  std::to_string(axis));
    }
    const int64_t resolved = axis < 0 ? axis + dim : axis;
    if (resolved < 0 || resolved >= dim) {
      throw std::invalid_argument(
          "downhill: dataset '" + dataset + "': axis " + std::to_string(axis) +
          " is out of range for tensor " + std::to_string(i) + " of shape " + shape_of(t) +
          "; allowed: " + std::to_string(-dim) + " to " + std::to_string(dim - 1));
    }
    if (is_sparse_coo(t) && resolved != 0) {
      throw std::invalid_argument(tensor + " of shape " + shape_of(t) +
                                  " has layout torch::kSparse (sparse COO), which is split along "
                                  "axis 0 only, not along axis " +
                                  std::to_string(axis) + "; allowed for it: axis 0 (or " +
                                  std::to_string(-dim) + ")");
    }
    if (is_sparse_coo(t) && t.sparse_dim() == 0) {
      throw std::invalid_argument(tensor + " of shape " + shape_of(t) +
                                  " has layout torch::kSparse (sparse COO) with no sparse "
                                  "dimension; allowed: a sparse COO tensor whose axis 0 is sparse "
                                  "(sparse_dim() >= 1)");
    }
    if (t.numel() == 0) {
      throw std::invalid_argument(tensor + " of shape " + shape_of(t) +
                                  " is empty; every tensor needs at least one sample");
    }
    if (length >= 0 && t.size(resolved) != length) {
      throw std::invalid_argument("downhill: dataset '" + dataset +
                                  "': tensors differ in length along axis " + std::to_string(axis) +
                                  ": " + shapes_of(arrays));
    }
    length = t.size(resolved);
  }
  return length;
}

// Where each row's entries begin in a coalesced sparse COO tensor, whose entries are sorted by
// row: rows [begin, end) are entries [starts[begin], starts[end]). A CPU tensor of size(0) + 1.
torch::Tensor row_starts_of(const torch::Tensor& coalesced) {
  const auto rows = coalesced._indices().select(0, 0).contiguous();
  return at::searchsorted(rows, torch::arange(coalesced.size(0) + 1, rows.options())).cpu();
}

// A coalesced sparse COO tensor of `sizes` from entries already sorted and distinct.
torch::Tensor coalesced_sparse(const torch::Tensor& indices, const torch::Tensor& values,
                               const torch::Tensor& like, int64_t rows) {
  auto sizes = like.sizes().vec();
  sizes[0] = rows;
  auto out = at::_sparse_coo_tensor_unsafe(indices, values, sizes, like.options());
  out._coalesced_(true);
  return out;
}

// Rows [begin, end) of a coalesced sparse COO tensor, coalesced: a slice of its entries, the
// values a view of its values, the indices a copy with the rows shifted to start at 0.
torch::Tensor sparse_rows(const torch::Tensor& coalesced, const torch::Tensor& starts,
                          int64_t begin, int64_t end) {
  if (begin == 0 && end == coalesced.size(0)) return coalesced;
  const auto* start = starts.data_ptr<int64_t>();
  const int64_t first = start[begin];
  const int64_t count = start[end] - first;
  auto indices = coalesced._indices().narrow(1, first, count).clone(at::MemoryFormat::Contiguous);
  indices.select(0, 0).sub_(begin);
  return coalesced_sparse(indices, coalesced._values().narrow(0, first, count), coalesced,
                          end - begin);
}

// The rows `rows` (distinct; a CPU index tensor) of a coalesced sparse COO tensor, in that
// order, as a coalesced sparse COO tensor: output row j holds row rows[j]'s entries in their
// order, so the entries stay sorted. Costs O(rows + their entries).
torch::Tensor gather_sparse_rows(const torch::Tensor& coalesced, const torch::Tensor& starts,
                                 const torch::Tensor& rows) {
  const auto picked = rows.contiguous();
  const auto* start = starts.data_ptr<int64_t>();
  const auto* row = picked.data_ptr<int64_t>();
  const int64_t count = picked.numel();
  int64_t entries = 0;
  for (int64_t j = 0; j < count; ++j) entries += start[row[j] + 1] - start[row[j]];
  // Where each output entry comes from, and its output row.
  auto source = torch::empty({entries}, torch::kLong);
  auto entry_row = torch::empty({entries}, torch::kLong);
  auto* from = source.data_ptr<int64_t>();
  auto* to_row = entry_row.data_ptr<int64_t>();
  for (int64_t j = 0, k = 0; j < count; ++j) {
    for (int64_t e = start[row[j]]; e < start[row[j] + 1]; ++e, ++k) {
      from[k] = e;
      to_row[k] = j;
    }
  }
  source = source.to(coalesced.device());
  // Each index dimension gathered on its own: index_select along dim 1 of the whole
  // [sparse_dim, nnz] indices would cost O(nnz).
  const auto all = coalesced._indices();
  auto indices = torch::empty({all.size(0), entries}, all.options());
  indices.select(0, 0).copy_(entry_row);
  for (int64_t d = 1; d < all.size(0); ++d) {
    auto out = indices.select(0, d);
    at::index_select_out(out, all.select(0, d), 0, source);
  }
  return coalesced_sparse(indices, coalesced._values().index_select(0, source), coalesced, count);
}

// `arrays` cut along `axis` into consecutive slices of `batch` samples (the last shorter):
// views of dense tensors, and rows of sparse COO tensors (coalesced, with their `row_starts`).
// Without `sparse_slices`, sparse tensors' places are left undefined (for datasets that gather
// each batch, whose slices only count the batches).
std::vector<Batch> slices_of(const Batch& arrays, const std::vector<torch::Tensor>& row_starts,
                             int64_t axis, int64_t length, int64_t batch, bool sparse_slices) {
  std::vector<Batch> slices;
  for (int64_t start = 0; start < length; start += batch) {
    const int64_t size = std::min(batch, length - start);
    Batch slice;
    slice.reserve(arrays.size());
    for (size_t i = 0; i < arrays.size(); ++i) {
      const auto& t = arrays[i];
      if (is_sparse_coo(t)) {
        slice.push_back(sparse_slices ? sparse_rows(t, row_starts[i], start, start + size)
                                      : torch::Tensor());
        continue;
      }
      const int64_t resolved = axis < 0 ? axis + t.dim() : axis;
      slice.push_back(t.narrow(resolved, start, size));
    }
    slices.push_back(std::move(slice));
  }
  return slices;
}

}  // namespace

Dataset::Dataset(Batch arrays, DatasetOptions options) : options_(std::move(options)) {
  check_iteration_size(name(), options_.iteration_size());
  if (arrays.empty()) {
    // A loss that needs no data: each pass is iteration_size steps on an empty batch.
    slices_.emplace_back();
    order_ = {0};
    iteration_size_ = options_.iteration_size().value_or(1);
    return;
  }
  for (size_t i = 0; i < arrays.size(); ++i) {
    if (arrays[i].defined() && arrays[i].is_meta()) {
      throw std::invalid_argument("downhill: dataset '" + name() + "': array " + std::to_string(i) +
                                  " is on the meta device, which holds no values; give arrays "
                                  "that hold data (CPU or another device)");
    }
  }
  const int64_t length = sample_count(name(), arrays, options_.axis());
  const int64_t batch = options_.batch_size() <= 0 ? length : options_.batch_size();
  // Sparse COO tensors are coalesced once, so that each row's entries are consecutive.
  std::vector<torch::Tensor> row_starts(arrays.size());
  for (size_t i = 0; i < arrays.size(); ++i) {
    if (!is_sparse_coo(arrays[i])) continue;
    arrays[i] = arrays[i].coalesce();
    row_starts[i] = row_starts_of(arrays[i]);
  }
  // Per-sample shuffling permutes samples, not slices; the slices still count batches.
  const bool gather_samples = options_.shuffle() && options_.shuffle_samples();
  slices_ = slices_of(arrays, row_starts, options_.axis(), length, batch, !gather_samples);
  if (gather_samples) {
    arrays_ = std::move(arrays);
    row_starts_ = std::move(row_starts);
  }
  order_.resize(gathers() ? static_cast<size_t>(length) : slices_.size());
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<int64_t>(i);
  iteration_size_ = options_.iteration_size().value_or(slice_count());
  reshuffle();
}

Dataset::Dataset(std::function<Batch()> generator, DatasetOptions options)
    : options_(std::move(options)), generator_(std::move(generator)) {
  if (!generator_) {
    throw std::invalid_argument("downhill: dataset '" + name() + "': the generator is empty");
  }
  check_iteration_size(name(), options_.iteration_size());
  iteration_size_ = options_.iteration_size().value_or(detail::kGeneratorIterationSize);
}

Dataset Dataset::of_walks(std::function<Walk()> start_walk, DatasetOptions options) {
  Dataset data(std::move(options));
  if (!start_walk) {
    throw std::invalid_argument("downhill: dataset '" + data.name() +
                                "': the function that starts a walk of its range is empty");
  }
  check_iteration_size(data.name(), data.options_.iteration_size());
  data.start_walk_ = std::move(start_walk);
  data.iteration_size_ = data.options_.iteration_size().value_or(0);
  return data;
}

bool Dataset::fetch_from_walk() {
  if (!walk_) {
    walk_ = start_walk_();
    if (!walk_) {
      throw std::invalid_argument("downhill: dataset '" + name() +
                                  "': starting a walk of its range gave an empty function");
    }
    position_ = 0;
    for (; walk_skip_ > 0; --walk_skip_, ++position_) {
      if (!walk_()) {
        const int64_t wanted = position_ + walk_skip_;
        walk_skip_ = 0;
        walk_ = nullptr;
        throw std::invalid_argument("downhill: dataset '" + name() + "': its range ended after " +
                                    std::to_string(position_) +
                                    " batches, before the checkpoint's position (batch " +
                                    std::to_string(wanted) +
                                    " of the walk); the range must be as long as when it was "
                                    "checkpointed");
      }
    }
  }
  std::optional<Batch> batch = walk_();
  if (!batch) {
    const int64_t length = position_;
    walk_ = nullptr;
    position_ = 0;
    if (length == 0) {
      throw std::invalid_argument("downhill: dataset '" + name() +
                                  "': a walk of its range gave no batch; a range must give at "
                                  "least one");
    }
    if (!options_.iteration_size()) iteration_size_ = length;
    return false;
  }
  check_arity(*batch, "the range");
  peeked_ = std::move(batch);
  return true;
}

bool Dataset::pass_over(int64_t batches) {
  if (!walks() || options_.iteration_size()) return batches >= iteration_size_;
  if (peeked_ || fetch_from_walk()) return false;
  // The walk has ended, and with it the pass, unless the pass has taken nothing: then it
  // walks the range anew (which gives a batch, or throws).
  return batches > 0 || !fetch_from_walk();
}

void Dataset::check_position(const std::vector<int64_t>& order, int64_t position) const {
  if (walks()) {
    if (order.empty() && position >= 0) return;
    throw std::invalid_argument(
        "downhill: dataset '" + name() + "' walks a range; the saved order (" +
        std::to_string(order.size()) + " entries) or position (" + std::to_string(position) +
        ") does not fit it: a range's order is empty and its position at least 0");
  }
  const auto n = static_cast<int64_t>(order_.size());
  std::vector<bool> seen(order_.size(), false);
  bool permutation = static_cast<int64_t>(order.size()) == n;
  for (size_t i = 0; permutation && i < order.size(); ++i) {
    permutation = order[i] >= 0 && order[i] < n && !seen[order[i]];
    if (permutation) seen[order[i]] = true;
  }
  if (!permutation || position < 0 || (n > 0 && position >= std::max<int64_t>(1, slice_count()))) {
    throw std::invalid_argument(
        "downhill: dataset '" + name() + "' has " + std::to_string(n) +
        (gathers() ? " samples in " + std::to_string(slice_count()) + " batches" : " slices") +
        "; the saved order (" + std::to_string(order.size()) + " entries) or position (" +
        std::to_string(position) + ") does not fit it");
  }
}

void Dataset::restore_position(std::vector<int64_t> order, int64_t position) {
  check_position(order, position);
  order_ = std::move(order);
  position_ = position;
  peeked_.reset();
  if (walks()) {
    walk_ = nullptr;
    walk_skip_ = position;
  }
  if (gathers()) sample_order_ = torch::tensor(order_, torch::TensorOptions().dtype(torch::kLong));
}

void Dataset::reshuffle() {
  if (!options_.shuffle() || order_.size() < 2) return;
  const auto n = static_cast<int64_t>(order_.size());
  const auto permutation =
      options_.generator()
          ? torch::randperm(n, *options_.generator(), torch::TensorOptions().dtype(torch::kLong))
          : torch::randperm(n, torch::TensorOptions().dtype(torch::kLong));
  const auto* values = permutation.data_ptr<int64_t>();
  order_.assign(values, values + n);
  if (gathers()) sample_order_ = permutation;
}

Batch Dataset::gather(int64_t batch_index) {
  const auto samples = static_cast<int64_t>(order_.size());
  const int64_t batch = options_.batch_size() <= 0 ? samples : options_.batch_size();
  const int64_t start = batch_index * batch;
  const int64_t size = std::min(batch, samples - start);
  const auto indices = sample_order_.narrow(0, start, size);
  // Buffers for full batches and for the shorter last one.
  gather_buffers_.resize(2);
  auto& buffers = gather_buffers_[size == batch ? 0 : 1];
  buffers.resize(arrays_.size());
  Batch out;
  out.reserve(arrays_.size());
  for (size_t i = 0; i < arrays_.size(); ++i) {
    const auto& array = arrays_[i];
    if (is_sparse_coo(array)) {  // a fresh tensor each time: sparse tensors have no out= gather
      out.push_back(gather_sparse_rows(array, row_starts_[i], indices));
      continue;
    }
    const int64_t axis = options_.axis() < 0 ? options_.axis() + array.dim() : options_.axis();
    auto& buffer = buffers[i];
    // Reuse the buffer only when nobody else holds it (nor a view of it): a batch the
    // caller kept must never change under them.
    if (buffer.defined() && buffer.use_count() == 1 && buffer.storage().use_count() == 1) {
      at::index_select_out(buffer, array, axis, indices);
    } else {
      buffer = at::index_select(array, axis, indices);
    }
    out.push_back(buffer);
  }
  return out;
}

void Dataset::check_arity(const Batch& batch, const char* source) {
  if (batch.empty()) {
    throw std::invalid_argument("downhill: dataset '" + name() + "': " + source +
                                " returned an empty batch; a batch must hold at least one tensor");
  }
  if (generated_arity_ >= 0 && static_cast<int64_t>(batch.size()) != generated_arity_) {
    throw std::invalid_argument(
        "downhill: dataset '" + name() + "': " + source + " returned " +
        std::to_string(batch.size()) + " tensors, but its first batch had " +
        std::to_string(generated_arity_) + "; every batch must have the same number");
  }
  generated_arity_ = static_cast<int64_t>(batch.size());
}

const Batch& Dataset::peek() {
  if (!peeked_) {
    if (generator_) {
      Batch batch = generator_();
      check_arity(batch, "the generator");
      peeked_ = std::move(batch);
    } else if (walks()) {
      if (!fetch_from_walk()) fetch_from_walk();  // at a walk's end, the next walk's first
    } else {
      const int64_t place = (position_ + shard_rank_) % std::max<int64_t>(1, slice_count());
      if (!gathers()) return slices_[order_[place]];
      peeked_ = gather(place);
    }
  }
  return *peeked_;
}

Batch Dataset::next() {
  if (generator_) {
    if (peeked_) {
      Batch batch = std::move(*peeked_);
      peeked_.reset();
      return batch;
    }
    Batch batch = generator_();
    check_arity(batch, "the generator");
    return batch;
  }
  if (walks()) {
    peek();
    Batch batch = std::move(*peeked_);
    peeked_.reset();
    ++position_;
    return batch;
  }
  // Sharded, every rank walks the whole order alike and keeps its own place in each
  // stride of shard_count_ batches.
  Batch batch;
  for (int64_t place = 0; place < shard_count_; ++place) {
    if (place == shard_rank_) {
      if (peeked_) {
        batch = std::move(*peeked_);
        peeked_.reset();
      } else {
        batch = gathers() ? gather(position_) : slices_[order_[position_]];
      }
    }
    if (++position_ == slice_count()) {
      position_ = 0;
      reshuffle();
    }
  }
  return batch;
}

void Dataset::shard(int64_t rank, int64_t world_size) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    throw std::invalid_argument(
        "downhill: dataset '" + name() + "': shard(" + std::to_string(rank) + ", " +
        std::to_string(world_size) +
        ") is invalid; allowed: world_size >= 1 and 0 <= rank < world_size");
  }
  if (generator_ || walks()) return;
  shard_rank_ = rank;
  shard_count_ = world_size;
  peeked_.reset();
  if (!options_.iteration_size()) {
    iteration_size_ = (slice_count() + world_size - 1) / world_size;
  }
}

int64_t Dataset::samples(const Batch& batch) const {
  if (batch.empty() || !batch[0].defined() || batch[0].dim() == 0) return 1;
  const int64_t axis = options_.axis() < 0 ? options_.axis() + batch[0].dim() : options_.axis();
  if (axis < 0 || axis >= batch[0].dim()) return 1;
  return batch[0].size(axis);
}

}  // namespace downhill
