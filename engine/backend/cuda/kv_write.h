// Appends new K/V rows into the paged bf16 KV blocks: row r of sequence s goes to token slot
// n_past + r of its block table.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/paged_kv.h"
#include "engine/core/status.h"

namespace slim::cuda {

Status LaunchWriteKv(const PagedKv& kv,
                     const void* k, int64_t k_stride,  // bf16 [n, n_kv_heads * head_dim]
                     const void* v, int64_t v_stride,  // bf16 [n, n_kv_heads * head_dim]
                     int max_rows,                     // max n_rows over kv.seqs
                     cudaStream_t stream);

// RoPE (as LaunchRope) of q's n_heads and k's n_kv_heads in place, then the append of the rotated
// k and of v, in one kernel. positions: [rows of the batch], device; inv_freq [rope_dim / 2].
Status LaunchRopeWriteKv(const PagedKv& kv, void* q, int64_t q_stride, int n_heads, void* k, int64_t k_stride,
                         const void* v, int64_t v_stride, int max_rows, int rope_dim, const int32_t* positions,
                         const float* inv_freq, cudaStream_t stream);

}  // namespace slim::cuda
