// Paged attention for few-row sequences (decode): split-K over each item's keys ("flash
// decoding"), then a combine pass. An item is one query row of one sequence; all query heads of
// one KV head share each K/V load. Works for any row count, so it is also the fallback where
// the flash kernel does not apply (other head sizes or block sizes).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/paged_kv.h"
#include "engine/core/status.h"

namespace slim::cuda {

// Keys one split covers at most (its scores stay in shared memory).
inline constexpr int kMaxSplitKeys = 1024;
// Keys of one chunk (pipeline stage) of the block kernel (head size 64 or 128, 64-token blocks):
// one KV block.
inline constexpr int kBlockSplitKeys = 64;

struct DecodeItem {
  int32_t seq = 0;  // index into PagedKv::seqs
  int32_t row = 0;  // row within the sequence: token n_past + row, sees keys [0, n_past + row]
};

struct DecodeParams {
  PagedKv kv;
  const void* q = nullptr;          // bf16 [n, n_heads * head_dim]
  int64_t q_stride = 0;
  void* out = nullptr;              // bf16 [n, n_heads * head_dim]
  int64_t out_stride = 0;
  const DecodeItem* items = nullptr;  // [n_items], device
  int n_items = 0;
  int n_heads = 0;
  float scale = 0.0f;
  int n_splits = 1;                 // key ranges per item (DecodeSplits)
  int chunks_per_split = 1;         // block kernel: kBlockSplitKeys-key chunks per split
  float* part_o = nullptr;          // scratch [n_items][n_heads][n_splits][head_dim]
  float* part_ml = nullptr;         // scratch [n_items][n_heads][n_splits][2]: max (log2 domain), sum
};

// head_dim one of 16, 32, 64, 128, 256; n_heads / n_kv_heads <= 8.
bool DecodeSupports(int head_dim, int group);
// Whether the block kernel serves this shape (else the general split kernel).
bool DecodeUsesBlockKernel(int head_dim, int block_tokens);
// Splits for `n_items` items of at most `max_keys` keys on a device of `n_sms` multiprocessors:
// kBlockSplitKeys each for the block kernel; otherwise enough to fill the device, none over
// kMaxSplitKeys.
int DecodeSplits(int n_items, int n_kv_heads, int max_keys, int n_sms, int head_dim, int block_tokens);
// Block kernel: CTAs that fit on one multiprocessor, and chunks of kBlockSplitKeys keys per split
// (about one wave of CTAs; DecodeSplits uses the same).
int DecodeCtasPerSm(int head_dim);
int DecodeChunksPerSplit(int n_items, int n_kv_heads, int max_keys, int n_sms, int head_dim);
Status LaunchDecodeAttention(const DecodeParams& p, cudaStream_t stream);

}  // namespace slim::cuda
