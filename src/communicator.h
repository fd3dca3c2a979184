#pragma once
// The data-parallel group an optimizer trains in (docs/guide.md, "Scaling out"): joining it,
// and the few collectives the engine and the loop need — gradients averaged in reused
// flat buckets, small sums in float64, broadcasts from rank 0, and checks that every rank
// agrees. Internal: c10d's headers stay out of the public ones.

#include <ATen/ATen.h>
#include <downhill/options.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace downhill::detail {

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
  /// (small counts) are summed across ranks in the same collective.
  virtual std::vector<at::Tensor> average(const std::vector<at::Tensor>& tensors,
                                          std::vector<double>& flags) = 0;
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
