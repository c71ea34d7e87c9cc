// Row gathers: the token embedding lookup (bf16/f32 table -> f32/bf16 rows) and GatherRows
// (a plain byte copy of whole rows, used by pruning to compact hidden states and q/k/v).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/status.h"
#include "engine/core/tensor.h"

namespace slim::cuda {

// out[i, :] = table[ids[i], :]
Status LaunchEmbed(const void* table, DType table_type, int64_t table_stride, int64_t vocab,  // [vocab, cols]
                   const int32_t* ids,                                                       // [n], device
                   void* out, DType out_type, int64_t out_stride,                            // [n, cols]
                   int64_t n, int64_t cols, cudaStream_t stream);

// dst[i, :] = src[rows[i], :] as bytes; dst must not overlap src (the backend stages in-place
// gathers through a scratch buffer).
Status LaunchGatherRows(const void* src, int64_t src_stride_bytes,  // [*, row_bytes]
                        const int32_t* rows,                        // [n], device
                        void* dst, int64_t dst_stride_bytes,        // [n, row_bytes]
                        int64_t n, int64_t row_bytes, cudaStream_t stream);

}  // namespace slim::cuda
