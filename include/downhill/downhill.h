#pragma once
// downhill: minimize scalar loss functions written with LibTorch tensors.
// Including this header brings in the whole public interface.

#include <downhill/batch.h>
#include <downhill/callbacks.h>
#include <downhill/dataset.h>
#include <downhill/distributed.h>
#include <downhill/errors.h>
#include <downhill/hessian.h>
#include <downhill/iteration.h>
#include <downhill/logging.h>
#include <downhill/minimize.h>
#include <downhill/monitors.h>
#include <downhill/optimizer.h>
#include <downhill/options.h>
#include <downhill/params.h>
#include <downhill/phase.h>
#include <downhill/range_dataset.h>
#include <downhill/registry.h>
#include <downhill/rule.h>
#include <downhill/run_summary.h>
#include <downhill/schedules.h>
