#include "engine/backend/cuda/device_common.cuh"
#include "engine/backend/cuda/pdl.h"

namespace slim::cuda {

void SetPdlLaunch(bool on) { g_pdl_launch.store(on, std::memory_order_relaxed); }

}  // namespace slim::cuda
