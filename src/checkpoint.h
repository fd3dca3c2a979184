#pragma once
// Checkpoint files: everything a run needs to continue bit-identically. Internal; the
// public calls are Optimizer::save_checkpoint and Optimizer::load_checkpoint.

#include <string>

#include "loop_state.h"
#include "update_engine.h"

namespace downhill::detail {

/// Writes the engine's and the loop's state (with the datasets' positions when given) and
/// the global generator's state to `path`, atomically.
void save_checkpoint(const std::string& path, UpdateEngine& engine, const LoopState& loop,
                     const Dataset* train, const Dataset* valid);

/// Reads and checks the whole file, then changes the engine, the loop and the generator at
/// once. std::invalid_argument when it is of another problem (or does not fit the given
/// datasets), std::runtime_error when it cannot be read; either way nothing has changed.
void load_checkpoint(const std::string& path, UpdateEngine& engine, LoopState& loop,
                     const Dataset* train, const Dataset* valid);

}  // namespace downhill::detail
