#pragma once
// The loop (docs/guide.md, "The loop") as a range: `for (const auto& [train, valid] :
// opt->iterate(data))`.

#include <downhill/monitors.h>

#include <cstddef>
#include <iterator>
#include <memory>
#include <utility>

namespace downhill {

class Dataset;
class Optimizer;

namespace detail {
struct RunParts;  // what Optimizer::iterate() hands over (internal)
}

/// One item per pass over the training data: the (training, validation) monitors.
///
/// The loop validates every `validate_every` passes (pass 0 included), keeps the
/// best parameters, and ends when patience elapses, `max_passes` passes are done,
/// `max_steps` updates are applied (right after that update, even inside a pass), Ctrl-C is
/// pressed or a callback (downhill/callbacks.h) asks it to; in those cases the best
/// parameters are restored. Leaving a range-for with `break` leaves the
/// parameters as they are.
///
/// The run starts at the first step of the walk (begin()), not when the range is
/// made: the loop's counters start afresh then (or continue a checkpoint). An
/// Iteration can be walked once. Its iterators keep the loop's state alive, so an
/// iterator may outlive the range (`auto it = opt->iterate(data).begin(); ++it;`) or
/// the range may be moved; the optimizer and the datasets must outlive both. Ctrl-C
/// is handled by the loop while an iterator of the walk exists (so from begin() until
/// the loop ends or the range-for is left); then the previous handler is back.
class Iteration {
 public:
  using value_type = std::pair<Monitors, Monitors>;

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Iteration::value_type;
    using difference_type = std::ptrdiff_t;
    using pointer = const value_type*;
    using reference = const value_type&;

    iterator() = default;
    reference operator*() const;
    pointer operator->() const { return &**this; }
    iterator& operator++();
    void operator++(int) { ++*this; }
    bool operator==(const iterator& other) const { return walk_ == other.walk_; }

   private:
    friend class Iteration;
    struct Walk;  // the loop's state and its Ctrl-C handler, shared by an iterator's copies
    explicit iterator(std::shared_ptr<Walk> walk) : walk_(std::move(walk)) {}
    std::shared_ptr<Walk> walk_;  // null at the end
  };

  ~Iteration();
  Iteration(Iteration&&) noexcept;
  Iteration& operator=(Iteration&&) noexcept;

  /// Starts the run, runs up to the first pass (or the end) and returns an iterator
  /// to it. Throws std::logic_error when the Iteration was walked before.
  iterator begin();
  iterator end() { return iterator(); }

 private:
  friend class Optimizer;  // makes it, in iterate()
  Iteration(const detail::RunParts& parts, Dataset& train, Dataset* valid);
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace downhill
