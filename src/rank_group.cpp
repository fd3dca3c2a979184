#include "rank_group.h"

#include "data_parallel.h"
#include "update_engine.h"

namespace downhill::detail {

std::unique_ptr<RankGroup> RankGroup::join(UpdateEngine& engine) {
  auto group = DataParallel::join(engine);
  if (group && group->place().world_size > 1) return group;
  return std::make_unique<SingleRank>();
}

bool SingleRank::reduce(UpdateEngine& engine, std::vector<at::Tensor>& grads,
                        std::vector<at::Tensor>& /*hvs*/, StepFlags& flags) {
  if (flags.nonfinite_losses > 0) return false;
  return engine.add_to_window(grads);
}

std::string SingleRank::nonfinite_loss(const StepFlags& /*flags*/, double loss) const {
  return "non-finite loss (" + std::to_string(loss) + ")";
}

}  // namespace downhill::detail
