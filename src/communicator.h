#pragma once
// The data-parallel group an optimizer trains in (docs/guide.md, "Scaling out"): joining it,
// and the few collectives the engine and the loop need — gradients averaged in reused
// flat buckets, small sums in float64, broadcasts from rank 0, and checks that every rank
// agrees. Internal: c10d's headers stay out of the public ones.

#include <ATen/ATen.h>
#include <downhill/options.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace downhill::detail {

/// Values every rank must hold alike at a collective (settings that are functions, at this
/// update), and the name of each for the error that a difference is: asked only then, so
/// that an agreement that holds builds no text.
struct Agreement {
  std::vector<double> values;
  std::function<std::string(size_t)> name_of;
};

/// Every collective is announced first, by a small one of fixed size that carries what it is
/// and its size (and the values to agree): Gloo pairs every rank's n-th collective, and two of
/// different sizes abort the process (gloo::EnforceNotMet, thrown in its thread), so a rank
/// out of step must be caught before its collective runs. A difference is a
/// std::runtime_error on every rank, naming both operations or both values.
class Communicator {
 public:
  /// The group `options` asks for: Options::process_group's, or torchrun's, joined once
  /// per process and kept (a later optimizer shares it). Throws std::runtime_error naming
  /// what is missing or what failed.
  static std::shared_ptr<Communicator> join(const Options& options);
  virtual ~Communicator() = default;

  virtual int64_t rank() const noexcept = 0;
  virtual int64_t size() const noexcept = 0;
  /// "gloo", or the backend of a group handed in.
  virtual std::string backend() const = 0;

  /// The mean over ranks of each defined tensor of `tensors` (undefined ones stay
  /// undefined), as contiguous views of flat buffers that the next call reuses. `flags`
  /// (small counts) are summed across ranks in the same collective. `agreed` must be equal
  /// on every rank (compared exactly, in the announcement): std::runtime_error otherwise,
  /// before anything is sent.
  virtual std::vector<at::Tensor> average(const std::vector<at::Tensor>& tensors,
                                          std::vector<double>& flags,
                                          const Agreement& agreed = {}) = 0;
  /// average() in parts, for tensors that become ready one by one (gradients during the
  /// backward pass): begin_average() plans the buckets from `like` (the tensors' shapes and
  /// dtypes; undefined ones take no part), filled in the order of `order` (every index of a
  /// defined tensor once; it is part of the layout the announcement compares), and announces
  /// the average at once; give() hands over one tensor, and a bucket is sent as soon as its
  /// tensors are all given and every bucket before it is sent (so that the ranks' collectives
  /// pair up in order); finish_average() sends the rest (a tensor not given as zeros), waits,
  /// sums `flags` (given to begin_average()) and returns what average() returns.
  virtual void begin_average(const std::vector<at::Tensor>& like, const std::vector<size_t>& order,
                             const std::vector<double>& flags, const Agreement& agreed) = 0;
  virtual void give(size_t index, const at::Tensor& tensor) = 0;
  virtual std::vector<at::Tensor> finish_average(std::vector<double>& flags) = 0;
  /// Sums `values` across ranks, in float64; `what` names the sum in errors.
  virtual void sum(std::vector<double>& values, const std::string& what) = 0;
  /// Copies rank 0's values into every rank's `tensors` (same shapes and dtypes on every
  /// rank, contiguous or not).
  virtual void broadcast(std::vector<at::Tensor>& tensors) = 0;
  /// Throws std::invalid_argument on every rank when `lines` differ across ranks, naming
  /// `what`, the first line that differs, and both ranks' versions of it.
  virtual void check_same(const std::vector<std::string>& lines, const std::string& what) = 0;
  /// Waits for every rank.
  virtual void barrier() = 0;
};

}  // namespace downhill::detail
