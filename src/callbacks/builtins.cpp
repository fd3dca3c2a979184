#include "callbacks/builtins.h"

#include <downhill/dataset.h>

#include <memory>

#include "callback_list.h"
#include "callbacks/checkpoint_writer.h"
#include "callbacks/divergence_check.h"
#include "callbacks/history_recorder.h"
#include "callbacks/patience.h"
#include "callbacks/progress_line.h"
#include "callbacks/reduce_on_plateau.h"
#include "callbacks/run_log.h"
#include "run_parts.h"

namespace downhill::detail {

void add_builtin_callbacks(CallbackList& run, const RunParts& parts, Dataset& train,
                           Dataset* valid) {
  // The progress line is cleared before anything logs; the log lines come before the files
  // are written, and the history before the checkpoint.
  run.add(std::make_shared<ProgressLine>(parts.loop, train, valid ? *valid : train));
  run.add(std::make_shared<DivergenceCheck>(parts.loop, parts.engine, run));
  run.add(std::make_shared<ReduceOnPlateau>(parts.loop, parts.engine));
  run.add(std::make_shared<RunLog>());
  run.add(std::make_shared<Patience>(run));
  run.add(std::make_shared<HistoryRecorder>(parts.loop, parts.ranks));
  run.add(std::make_shared<CheckpointWriter>(parts.ranks, train, valid));
}

}  // namespace downhill::detail
