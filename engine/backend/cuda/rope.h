// Rotary position embedding in place over the heads of each row: adjacent pairs (x[2i], x[2i+1])
// of the first rope_dim dims rotate by position * inv_freq[i] (scaling already in inv_freq).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/status.h"
#include "engine/core/tensor.h"

namespace slim::cuda {

Status LaunchRope(void* x, DType x_type, int64_t x_stride,   // [rows, n_heads * head_dim], in place
                  int64_t rows, int n_heads, int head_dim, int rope_dim,
                  const int32_t* positions,                  // [rows], device
                  const float* inv_freq,                     // [rope_dim / 2], device
                  cudaStream_t stream);

}  // namespace slim::cuda
