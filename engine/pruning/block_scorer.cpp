// Block scoring, selection and kept-row expansion on the host.
#include "engine/pruning/block_scorer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace slim {

namespace {

// The attention-mass variant: per-token mass, summed per unit, maximum per block.
std::vector<float> AttentionBlockScores(const float* q, int64_t q_stride, const float* k, int64_t k_stride,
                                        int64_t n_rows, const BlockScoreParams& p) {
  const int hd = p.head_dim, H = p.n_heads, G = H / p.n_kv_heads;
  const int64_t w = std::min<int64_t>(p.query_window, n_rows);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> mass(static_cast<size_t>(n_rows), 0.0), logit(static_cast<size_t>(n_rows));
  for (int h = 0; h < H; ++h) {
    for (int64_t r = n_rows - w; r < n_rows; ++r) {
      const float* qr = q + r * q_stride + int64_t{h} * hd;
      double mx = -INFINITY;
      for (int64_t t = 0; t <= r; ++t) {
        const float* kt = k + t * k_stride + int64_t{h / G} * hd;
        double dot = 0.0;
        for (int d = 0; d < hd; ++d) dot += double{qr[d]} * kt[d];
        logit[static_cast<size_t>(t)] = dot * scale;
        mx = std::max(mx, logit[static_cast<size_t>(t)]);
      }
      double sum = 0.0;
      for (int64_t t = 0; t <= r; ++t) sum += std::exp(logit[static_cast<size_t>(t)] - mx);
      for (int64_t t = 0; t <= r; ++t) mass[static_cast<size_t>(t)] += std::exp(logit[static_cast<size_t>(t)] - mx) / sum;
    }
  }
  const double norm = 1.0 / (static_cast<double>(H) * static_cast<double>(w));
  std::vector<float> block_scores(static_cast<size_t>((n_rows + p.block_tokens - 1) / p.block_tokens), 0.0f);
  for (int64_t u0 = 0; u0 < n_rows; u0 += p.unit_tokens) {
    double s = 0.0;
    for (int64_t t = u0; t < std::min<int64_t>(u0 + p.unit_tokens, n_rows); ++t) s += mass[static_cast<size_t>(t)];
    float& b = block_scores[static_cast<size_t>(u0 / p.block_tokens)];
    b = std::max(b, static_cast<float>(s * norm));
  }
  return block_scores;
}

}  // namespace

std::vector<float> ScoreBlocksRef(const float* q, int64_t q_stride, const float* k, int64_t k_stride,
                                  int64_t n_rows, const BlockScoreParams& p) {
  const int hd = p.head_dim, H = p.n_heads, KVH = p.n_kv_heads, G = H / KVH;
  const int64_t n_blocks = (n_rows + p.block_tokens - 1) / p.block_tokens;
  std::vector<float> block_scores(static_cast<size_t>(n_blocks), 0.0f);
  if (n_rows == 0) return block_scores;
  if (p.attention) return AttentionBlockScores(q, q_stride, k, k_stride, n_rows, p);
  // Mean query of the last window, per query head.
  const int64_t w = std::min<int64_t>(p.query_window, n_rows);
  std::vector<float> qm(static_cast<size_t>(H) * hd, 0.0f);
  for (int64_t r = n_rows - w; r < n_rows; ++r)
    for (int64_t i = 0; i < int64_t{H} * hd; ++i) qm[static_cast<size_t>(i)] += q[r * q_stride + i];
  for (float& v : qm) v /= static_cast<float>(w);
  // Per unit: mean key per KV head, then the head-averaged |q . k|.
  std::vector<float> km(static_cast<size_t>(KVH) * hd);
  for (int64_t u0 = 0; u0 < n_rows; u0 += p.unit_tokens) {
    const int64_t u1 = std::min<int64_t>(u0 + p.unit_tokens, n_rows);
    std::fill(km.begin(), km.end(), 0.0f);
    for (int64_t r = u0; r < u1; ++r)
      for (int64_t i = 0; i < int64_t{KVH} * hd; ++i) km[static_cast<size_t>(i)] += k[r * k_stride + i];
    const float inv = 1.0f / static_cast<float>(u1 - u0);
    float score = 0.0f;
    for (int h = 0; h < H; ++h) {
      const float* qh = &qm[static_cast<size_t>(h) * hd];
      const float* kh = &km[static_cast<size_t>(h / G) * hd];
      float dot = 0.0f;
      for (int d = 0; d < hd; ++d) dot += qh[d] * kh[d];
      score += std::fabs(dot * inv);
    }
    score /= static_cast<float>(H);
    float& b = block_scores[static_cast<size_t>(u0 / p.block_tokens)];
    b = std::max(b, score);
  }
  return block_scores;
}

std::vector<int32_t> SelectBlocks(const std::vector<float>& scores, int64_t keep_blocks) {
  const int32_t n = static_cast<int32_t>(scores.size());
  std::vector<int32_t> out;
  if (keep_blocks >= n) {
    out.resize(static_cast<size_t>(n));
    std::iota(out.begin(), out.end(), 0);
    return out;
  }
  out.push_back(0);
  if (n > 1) out.push_back(n - 1);
  std::vector<int32_t> middle;
  for (int32_t b = 1; b < n - 1; ++b) middle.push_back(b);
  const int64_t want = std::max<int64_t>(0, keep_blocks - static_cast<int64_t>(out.size()));
  // The `want` best by score, ties to the lower block (a stable sort's first `want`), found in
  // linear time: a decode step under a budget selects among thousands of blocks per segment.
  const auto better = [&](int32_t a, int32_t b) {
    const float sa = scores[static_cast<size_t>(a)], sb = scores[static_cast<size_t>(b)];
    return sa > sb || (sa == sb && a < b);
  };
  const int64_t take = std::min<int64_t>(want, static_cast<int64_t>(middle.size()));
  if (take > 0 && take < static_cast<int64_t>(middle.size())) {
    std::nth_element(middle.begin(), middle.begin() + take - 1, middle.end(), better);
  }
  for (int64_t i = 0; i < take; ++i) out.push_back(middle[static_cast<size_t>(i)]);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int32_t> KeptRows(const std::vector<int32_t>& blocks, int64_t n_rows, int block_tokens) {
  std::vector<int32_t> rows;
  for (int32_t b : blocks) {
    const int64_t r0 = int64_t{b} * block_tokens, r1 = std::min<int64_t>(r0 + block_tokens, n_rows);
    for (int64_t r = r0; r < r1; ++r) rows.push_back(static_cast<int32_t>(r));
  }
  return rows;
}

}  // namespace slim
