#pragma once
// L-BFGS's update (docs/guide.md, "L-BFGS"): the direction from the curvature pairs kept in
// the engine's state (slots "s" and "y", the newest pair in the last row), then a line search
// along it — the strong-Wolfe bracketing and zoom of Nocedal & Wright (Algorithms 3.5 and
// 3.6) with cubic interpolation, or a fixed step — and the new pair. All the parameters that
// update are one vector. Internal.

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "evaluation_cache.h"

namespace downhill {
class Options;
}

namespace downhill::detail {

class UpdateEngine;

/// L-BFGS's settings, read from the options (declared, with their defaults, in
/// algorithms/lbfgs.cpp).
struct LbfgsSettings {
  int64_t history = 0;          // curvature pairs kept
  bool line_search = false;     // strong Wolfe; false: the fixed step t = learning_rate
  int64_t max_evaluations = 0;  // per line search
  double c1 = 0;                // sufficient decrease
  double c2 = 0;                // curvature
};
LbfgsSettings lbfgs_settings(const Options& options);

class LbfgsSearch;  // lbfgs_search.cpp: the search of the parameters' dtype

/// L-BFGS's buffers between updates (the start point, the direction and a pool of gradient
/// buffers, per parameter that updates, and the search with its lists of pointers), so that an
/// update allocates nothing once they exist, and whether the skipped pair was logged.
struct LbfgsWorkspace {
  LbfgsWorkspace();
  ~LbfgsWorkspace();
  LbfgsWorkspace(const LbfgsWorkspace&) = delete;
  LbfgsWorkspace& operator=(const LbfgsWorkspace&) = delete;

  std::vector<at::Tensor> start;
  std::vector<at::Tensor> direction;
  std::vector<std::vector<at::Tensor>> gradients;  // [buffer][parameter]; buffer 0: the start's
  bool warned_skipped_pair = false;
  std::unique_ptr<LbfgsSearch> search;
};

/// Evaluates the loss and its gradient at the parameters as they stand.
using PointObjective = std::function<BatchEvaluation()>;

/// One L-BFGS update from `start`, the evaluation at the parameters as they stand. The line
/// search writes each point it tries into the parameters and evaluates it with `objective`.
/// Returns the evaluation of the point the parameters are left at, and counts the update in
/// the engine with its measures. When the start's loss or gradient is not finite, or the fixed
/// step's point is not, the parameters stay as they were, the engine records a skipped update,
/// and `start` is returned. If `objective` throws, the parameters are put back first.
BatchEvaluation lbfgs_update(UpdateEngine& engine, LbfgsWorkspace& work, BatchEvaluation start,
                             const PointObjective& objective);

}  // namespace downhill::detail
