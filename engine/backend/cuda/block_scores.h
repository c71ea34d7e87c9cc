// SlimInfer token-unit scores on the device (definition and CPU reference:
// engine/pruning/block_scorer.h): the mean query of the last `query_window` rows per head, then
// per unit of `unit_tokens` rows score = (1/H) sum_h |q_mean[h] . mean_k(unit)[h / G]|; or, with
// `attention`, the softmax attention mass of the window's queries per unit.
// The block maximum over units and the top-k choice stay on the host (a few thousand floats).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/status.h"
#include "engine/core/tensor.h"

namespace slim::cuda {

struct BlockScoreArgs {
  const void* q = nullptr;  // [n_rows, n_heads * head_dim], post-RoPE
  int64_t q_stride = 0;
  const void* k = nullptr;  // [n_rows, n_kv_heads * head_dim], post-RoPE
  int64_t k_stride = 0;
  DType dtype = DType::kBF16;  // of q and k: bf16 or f32
  int64_t n_rows = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int unit_tokens = 8;
  int query_window = 4;
  float* q_mean = nullptr;       // scratch [n_heads * head_dim], device
  float* unit_scores = nullptr;  // out [ceil(n_rows / unit_tokens)], device
  // The attention-mass variant: logits scratch [n_heads * window, n_rows] and per-row
  // (max, sum of exp) scratch [n_heads * window, 2]; q_mean is unused.
  bool attention = false;
  float* logits = nullptr;
  float* row_stats = nullptr;
};

// Scratch floats LaunchBlockScores needs for `a` (q_mean or logits and row stats, plus the unit
// scores), laid out by AssignBlockScoreScratch.
size_t BlockScoreScratchFloats(const BlockScoreArgs& a);
void AssignBlockScoreScratch(BlockScoreArgs* a, float* scratch);

Status LaunchBlockScores(const BlockScoreArgs& a, cudaStream_t stream);

}  // namespace slim::cuda
