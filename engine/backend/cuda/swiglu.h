// SwiGLU activation: out[n, f] = silu(gate_up[n, f]) * gate_up[n, f + ff], fp32 math.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/status.h"
#include "engine/core/tensor.h"

namespace slim::cuda {

Status LaunchSwiGlu(const void* gate_up, DType in_type, int64_t in_stride,  // [rows, 2 * ff]
                    void* out, DType out_type, int64_t out_stride,          // [rows, ff]
                    int64_t rows, int64_t ff, cudaStream_t stream);

}  // namespace slim::cuda
