#pragma once
// The loop of DESIGN.md §5 as a range: `for (const auto& [train, valid] : opt->iterate(data))`.

#include <downhill/monitors.h>

#include <cstddef>
#include <iterator>
#include <memory>
#include <utility>

namespace downhill {

class Dataset;
class Optimizer;

/// One item per pass over the training data: the (training, validation) monitors.
///
/// The loop validates every `validate_every` passes (pass 0 included), keeps the
/// best parameters, and ends when patience elapses, `max_updates` passes are
/// done, or Ctrl-C is pressed; in those cases the best parameters are restored.
/// Leaving a range-for with `break` leaves the parameters as they are.
/// Only one iterator may walk a given Iteration, once.
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
    bool operator==(const iterator& other) const;

   private:
    friend class Iteration;
    explicit iterator(Iteration* owner) : owner_(owner) {}
    Iteration* owner_ = nullptr;
  };

  Iteration(Optimizer& optimizer, Dataset& train, Dataset* valid);
  ~Iteration();
  Iteration(Iteration&&) noexcept;
  Iteration& operator=(Iteration&&) = delete;

  /// Runs up to the first pass (or the end) and returns an iterator to it.
  iterator begin();
  iterator end() { return iterator(); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace downhill
