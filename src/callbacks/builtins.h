#pragma once
// The built-in callbacks of a run, in the order the loop calls them (docs/guide.md,
// "Callbacks"): the progress line, the divergence check, reduce on plateau, the log lines,
// patience, the history and the checkpoint. Internal.

namespace downhill {
class Dataset;
}

namespace downhill::detail {

class CallbackList;
struct RunParts;

/// Adds the built-ins of a run over `train` (and `valid`) to `run`.
void add_builtin_callbacks(CallbackList& run, const RunParts& parts, Dataset& train,
                           Dataset* valid);

}  // namespace downhill::detail
