// SlimInfer block scoring and selection (DESIGN.md section 1), as plain host code: the CPU
// backend's implementation and the reference the CUDA kernel is tested against.
//   k_rep(u)    = mean of the post-RoPE keys of token unit u, per KV head
//   q_l         = mean of the post-RoPE queries of the last `window` tokens, per query head
//   score(u)    = (1/H) * sum_h |q_l[h] . k_rep(u)[h / G]|
//   score(b)    = max over the units of block b (a ragged tail belongs to the last block)
// With `attention` (a variant: "score=attn" in a schedule) a unit's score is instead the
// attention mass the last `window` queries give its tokens, as the layer's softmax would:
//   p_{h,j}(t)  = softmax over t <= r_j of q_{r_j}[h] . k_t[h / G] / sqrt(head_dim)
//                 (r_j: the window's rows, j = 0..window-1)
//   score(u)    = (1 / (H * window)) * sum_{h, j} sum_{t in u} p_{h,j}(t)
#pragma once

#include <cstdint>
#include <vector>

namespace slim {

struct BlockScoreParams {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_tokens = 64;
  int unit_tokens = 8;
  int query_window = 4;
  bool attention = false;  // attention-mass scores instead of |mean q . mean k|
};

// q: [n_rows, n_heads * head_dim] with row stride q_stride (floats); k likewise with
// [n_rows, n_kv_heads * head_dim]. Returns one score per block of block_tokens tokens,
// ceil(n_rows / block_tokens) of them: a ragged tail is the last block (always kept).
std::vector<float> ScoreBlocksRef(const float* q, int64_t q_stride, const float* k, int64_t k_stride,
                                  int64_t n_rows, const BlockScoreParams& p);

// Blocks to keep: block 0 and the last block always, then the highest-scoring others until
// `keep_blocks` (ties: lower index first); returned in increasing order.
std::vector<int32_t> SelectBlocks(const std::vector<float>& block_scores, int64_t keep_blocks);

// Row indices (relative to the sequence) of the tokens in `blocks`, in order.
std::vector<int32_t> KeptRows(const std::vector<int32_t>& blocks, int64_t n_rows, int block_tokens);

}  // namespace slim
