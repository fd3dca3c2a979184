#pragma once
// The problem shared by checkpoint_test's kill test and its checkpoint_writer child.

#include <downhill/downhill.h>
#include <torch/torch.h>

#include <memory>

namespace kill_test {

// Four 64 KiB tensors: small enough for several writes in the 0-20 ms a kill waits,
// large enough that kills land inside writes (serializing, writing, fsync, rename).
inline constexpr int64_t kElements = 1 << 14;

// Adam with momentum: the parameter "w" plus state tensors m, v and the velocity.
inline std::unique_ptr<downhill::Optimizer> make_optimizer(const torch::Tensor& w) {
  return downhill::build("adam", {{"w", w}}, downhill::Options().momentum(0.5));
}

}  // namespace kill_test
