#pragma once
// A Dataset from any range of batches, walked anew each pass: a torch::data DataLoader, a
// std::vector<Batch>, ... (docs/guide.md, "From a DataLoader or any range").

#include <downhill/dataset.h>
#include <torch/data/example.h>
#include <torch/types.h>

#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace downhill {

namespace detail {

template <typename T>
inline constexpr bool kAlwaysFalse = false;

// A range's element as a Batch: a Batch as it is; a tensor as {tensor}; a torch::data::Example
// as {data, target} (a TensorExample as {data}); a vector of Examples (a DataLoader without
// the Stack transform) stacked along a new axis 0, as torch::data::transforms::Stack does.
template <typename Item>
Batch to_batch(const Item& item) {
  using Example = torch::data::Example<>;
  using TensorExample = torch::data::TensorExample;
  if constexpr (std::is_convertible_v<const Item&, const Batch&>) {
    return item;
  } else if constexpr (std::is_same_v<Item, torch::Tensor>) {
    return {item};
  } else if constexpr (std::is_same_v<Item, Example>) {
    return {item.data, item.target};
  } else if constexpr (std::is_same_v<Item, TensorExample>) {
    return {item.data};
  } else if constexpr (std::is_same_v<Item, std::vector<Example>> ||
                       std::is_same_v<Item, std::vector<TensorExample>>) {
    std::vector<torch::Tensor> data;
    std::vector<torch::Tensor> targets;
    data.reserve(item.size());
    for (const auto& example : item) {
      data.push_back(example.data);
      if constexpr (std::is_same_v<Item, std::vector<Example>>) targets.push_back(example.target);
    }
    if (targets.empty()) return {torch::stack(data)};
    return {torch::stack(data), torch::stack(targets)};
  } else {
    static_assert(kAlwaysFalse<Item>,
                  "downhill::from_range: a range's elements must be a downhill::Batch, a "
                  "torch::Tensor, a torch::data::Example<> or TensorExample, or a std::vector "
                  "of them; map other elements to one of these first");
  }
}

// A function that starts a walk of `*range` (begin() to end(); a DataLoader's begin() starts
// its epoch), keeping `owner` alive as long as the Dataset holds it.
template <typename Range>
std::function<Dataset::Walk()> walks_of(Range* range, std::shared_ptr<void> owner) {
  return [range, owner]() -> Dataset::Walk {
    using std::begin;
    using std::end;
    struct Place {
      decltype(begin(*range)) at;
      decltype(end(*range)) stop;
      bool started = false;
    };
    auto place = std::make_shared<Place>(Place{begin(*range), end(*range)});
    return [place, owner]() -> std::optional<Batch> {
      if (place->started && place->at != place->stop) ++place->at;
      place->started = true;
      if (place->at == place->stop) return std::nullopt;
      return to_batch(*place->at);
    };
  };
}

}  // namespace detail

/// A Dataset whose passes walk `range` from begin() to end(), each pass a new walk (with
/// DatasetOptions::iteration_size, that many batches a pass instead, a walk that ends starting
/// the next). `range` is borrowed: it must outlive the Dataset. Its elements are Batches,
/// tensors, torch::data::Examples (as {data, target}) or vectors of Examples (stacked).
///
///     auto loader = torch::data::make_data_loader(
///         dataset.map(torch::data::transforms::Stack<>()), 64);
///     downhill::Dataset train = downhill::from_range(*loader, DatasetOptions().name("train"));
///
/// A checkpoint keeps the number of batches taken from the walk in progress; a resumed run
/// starts a new walk and drops that many batches (the same ones when the range's order is
/// fixed, others when it shuffles). DatasetOptions' batch_size, axis and shuffle do not apply:
/// the range makes its batches.
template <typename Range>
Dataset from_range(Range& range, DatasetOptions options = {}) {
  return Dataset::of_walks(detail::walks_of(&range, nullptr), std::move(options));
}

/// As from_range(range), the Dataset sharing the range's ownership.
template <typename Range>
Dataset from_range(std::shared_ptr<Range> range, DatasetOptions options = {}) {
  Range* walked = range.get();
  return Dataset::of_walks(detail::walks_of(walked, std::move(range)), std::move(options));
}

/// As from_range(range), the Dataset taking the range over (the std::unique_ptr that
/// torch::data::make_data_loader returns).
template <typename Range>
Dataset from_range(std::unique_ptr<Range> range, DatasetOptions options = {}) {
  return from_range(std::shared_ptr<Range>(std::move(range)), std::move(options));
}

}  // namespace downhill
