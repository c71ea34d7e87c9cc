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

}  // namespace slim::cuda
