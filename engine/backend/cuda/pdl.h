// Host-side switch for programmatic dependent launch (device_common.cuh LaunchPdl), for code that
// is not compiled by nvcc.
#pragma once

namespace slim::cuda {

// On (the default): decode's kernels may start while the kernel before them in the stream still
// runs. Off: they launch in plain stream order. One setting for the process.
void SetPdlLaunch(bool on);

}  // namespace slim::cuda
