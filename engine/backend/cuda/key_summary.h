// Per-unit mean keys of one sequence's paged KV on the device (Backend::KeyUnitMeans; host
// reference: UnitMeanKeys in engine/pruning/decode_selection.h): the compact key summaries the
// decode KV selection scores each step, read straight from the KV blocks in one launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/status.h"
#include "engine/core/tensor.h"

namespace slim::cuda {

struct KeyUnitMeanArgs {
  const uint8_t* arena = nullptr;  // KV blocks: K [n_kv_heads][block_tokens][head_dim] bf16, then V
  int64_t block_bytes = 0;
  int64_t head_bytes = 0;          // block_tokens * head_dim * 2
  const int32_t* blocks = nullptr; // [ceil(n_tokens / block_tokens)] the sequence's block ids, device
  int32_t n_tokens = 0;
  int n_kv_heads = 0;
  int head_dim = 0;                // at most 1024
  int block_tokens = 0;
  int unit_tokens = 0;             // divides block_tokens
  void* out = nullptr;             // [ceil(n_tokens / unit_tokens), n_kv_heads * head_dim]
  DType out_dtype = DType::kBF16;  // bf16 or f32
  int64_t out_stride = 0;          // elements
};

// out[u, g * head_dim + d] = mean over tokens t in [u * unit, min((u + 1) * unit, n_tokens)) of
// K[g][t][d], summed in f32.
Status LaunchKeyUnitMeans(const KeyUnitMeanArgs& a, cudaStream_t stream);

}  // namespace slim::cuda
