#pragma once
// The parts of an optimizer that a run of the loop drives; Optimizer::iterate() hands them to
// the Iteration it makes. Internal.

#include <memory>
#include <vector>

namespace downhill {
class Callback;
class Optimizer;
}  // namespace downhill

namespace downhill::detail {

class UpdateEngine;
class LoopState;
class RankGroup;

struct RunParts {
  Optimizer& optimizer;
  UpdateEngine& engine;
  LoopState& loop;
  RankGroup& ranks;  // this process's rank and the others, or the single local one
  // The user's, in the order added; a run takes them as they are when it starts.
  const std::vector<std::shared_ptr<Callback>>& callbacks;
};

}  // namespace downhill::detail
