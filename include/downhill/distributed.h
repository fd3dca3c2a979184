#pragma once
// Data-parallel training on c10d (docs/guide.md, "Scaling out"): a process group of your
// own for Options::process_group, and this process's place in torchrun's group.

#include <c10/util/intrusive_ptr.h>

#include <cstdint>
#include <memory>

namespace c10d {
class ProcessGroup;
}  // namespace c10d

namespace downhill {

/// A c10d process group you made, handed to Options::process_group() instead of joining
/// torchrun's: `Options().process_group(downhill::ProcessGroup::of(my_group))`. Every rank
/// of the group must build its optimizer with it. The handle shares ownership of the group.
/// (The group's type is declared, not defined, here: this header stays light.)
class ProcessGroup {
 public:
  /// Wraps `group`; throws std::invalid_argument when it is null.
  static std::shared_ptr<const ProcessGroup> of(c10::intrusive_ptr<c10d::ProcessGroup> group);
  /// The group handed to of().
  c10::intrusive_ptr<c10d::ProcessGroup> group() const;

 private:
  struct Impl;
  explicit ProcessGroup(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

/// A process's place in a data-parallel group.
struct Place {
  int64_t rank = 0;        ///< in [0, world_size)
  int64_t world_size = 1;  ///< processes in the group
};

/// This process's place as torchrun gives it (the RANK and WORLD_SIZE variables): rank 0 of 1
/// without them. For sharding a generator dataset, whose batches each rank draws itself;
/// Optimizer::place() is the group an optimizer actually joined.
Place torchrun_place();

}  // namespace downhill
