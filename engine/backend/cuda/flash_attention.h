// Causal flash attention for prefill-sized sequences over the paged bf16 KV blocks (GQA; the
// new rows' K/V must already be written): one CTA per (128 query rows, query head), fp32
// accumulation and online softmax. Two kernels: mma.sync over one KV block (64 tokens) per step
// (any sm_80+ device, head size 64 or 128), and wgmma over two blocks per step (sm_90a, head
// size 128).
// Row r of a sequence (token n_past + r) attends to its tokens [0, n_past + r].
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/paged_kv.h"
#include "engine/core/status.h"

namespace slim::cuda {

inline constexpr int kFlashRows = 128;  // query rows per CTA
inline constexpr int kFlashKeys = 64;   // keys per step: one KV block

// Query rows [row0, row0 + kFlashRows) of sequence `seq` (index into PagedKv::seqs).
struct FlashTile {
  int32_t seq = 0;
  int32_t row0 = 0;
};

// Which prefill kernel runs: kAuto picks the wgmma one for head size 128 on sm_90a.
enum class FlashKernel { kAuto, kMmaSync, kWgmma };

struct FlashParams {
  PagedKv kv;                       // block_tokens == kFlashKeys
  const void* q = nullptr;          // bf16 [n, n_heads * head_dim]
  int64_t q_stride = 0;
  void* out = nullptr;              // bf16 [n, n_heads * head_dim]
  int64_t out_stride = 0;
  const FlashTile* tiles = nullptr; // [n_tiles], device; heaviest first
  int n_tiles = 0;
  int n_heads = 0;
  float scale = 0.0f;               // softmax scale (1 / sqrt(head_dim))
  FlashKernel kernel = FlashKernel::kAuto;
};

// head_dim 64 or 128.
bool FlashSupports(int head_dim, int block_tokens);
// Whether the wgmma kernel (head_dim 128) can run on the current device: an sm_90 device running
// this binary's sm_90a code.
bool FlashSm90Available();
// The wgmma kernel itself (flash_attention_sm90.cu); LaunchFlashAttention validates and dispatches.
Status LaunchFlashSm90(const FlashParams& p, cudaStream_t stream);
Status LaunchFlashAttention(const FlashParams& p, cudaStream_t stream);

}  // namespace slim::cuda
