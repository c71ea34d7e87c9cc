// Element conversion between f32 and bf16 over strided 2-D views (uploads, downloads), and the
// in-place generation of synthetic weights (engine/model/weight_source.h SyntheticFill).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/status.h"
#include "engine/core/tensor.h"
#include "engine/model/weight_source.h"

namespace slim::cuda {

// dst[r, c] = src[r, c] for r < rows, c < cols; dtypes f32 or bf16 (round to nearest even).
Status LaunchConvert(const void* src, DType src_type, int64_t src_stride,  // [rows, cols]
                     void* dst, DType dst_type, int64_t dst_stride,        // [rows, cols]
                     int64_t rows, int64_t cols, cudaStream_t stream);

// dst[r, c] = SyntheticValue(fill, r * cols + c), stored as dst_type (f32 or bf16).
Status LaunchSyntheticFill(const SyntheticFill& fill, void* dst, DType dst_type, int64_t dst_stride,  // [rows, cols]
                           int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace slim::cuda
