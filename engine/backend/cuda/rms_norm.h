// RMSNorm per row, the residual add, and the two fused (acc += x; out = RMSNorm(acc)).
// Statistics in fp32; inputs and outputs f32 or bf16; norm weights f32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/status.h"
#include "engine/core/tensor.h"

namespace slim::cuda {

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w
Status LaunchRmsNorm(const void* x, DType x_type, int64_t x_stride,        // [rows, cols]
                     const float* w,                                        // [cols]
                     float eps, void* out, DType out_type, int64_t out_stride,  // [rows, cols]
                     int64_t rows, int64_t cols, cudaStream_t stream);

// acc[r, c] += x[r, c]; x_stride 0 adds x's one row to every row (a bias).
Status LaunchAdd(void* acc, DType acc_type, int64_t acc_stride,          // [rows, cols]
                 const void* x, DType x_type, int64_t x_stride,          // [rows, cols] or [1, cols]
                 int64_t rows, int64_t cols, cudaStream_t stream);

// acc += x, then out = RMSNorm(acc) * w: one pass over the row instead of two launches.
Status LaunchAddRmsNorm(void* acc, DType acc_type, int64_t acc_stride,   // [rows, cols]
                        const void* x, DType x_type, int64_t x_stride,   // [rows, cols]
                        const float* w, float eps,                       // [cols]
                        void* out, DType out_type, int64_t out_stride,   // [rows, cols]
                        int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace slim::cuda
