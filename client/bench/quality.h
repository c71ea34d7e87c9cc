// `sliminfer-bench quality`: runs the long-context quality tasks (bench/quality/make_tasks.py)
// dense and under pruning schedules, scoring exact match of the answered number, and the
// first-token agreement metrics (top-1 agreement, KL(dense || pruned)) on plain documents.
#pragma once

#include "engine/core/status.h"

namespace slim::bench {

Status CmdQuality(int argc, char** argv);

}  // namespace slim::bench
