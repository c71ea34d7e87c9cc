// A small per-row summary of a logits row from which the Sampler can often sample exactly without
// the row itself: the request (penalties, 1/T, k), the summary (max, softmax normalizer, k best)
// and the host reference that computes it. Backends compute the same summary where the logits
// live (Backend::SummarizeLogits; CUDA: engine/backend/cuda/sample_topk.cu). Knows nothing of
// devices; the penalty formula is shared with device code.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/core/status.h"

#if defined(__CUDACC__)
#define SLIM_HOST_DEVICE __host__ __device__
#else
#define SLIM_HOST_DEVICE
#endif

namespace slim {

// Largest k a summary may ask for (the CUDA kernel's limit).
inline constexpr int32_t kMaxSummaryK = 256;

// A token of the penalty window and how often it occurs there.
struct PenaltyCount {
  int32_t id;
  int32_t count;  // >= 1
};

// What to summarize of one row.
struct SummaryRequest {
  std::vector<PenaltyCount> penalties;  // distinct ids in [0, vocab)
  float repetition_penalty = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  float inv_t = 1.0f;  // the sampler's 1 / temperature (1 for greedy)
  int32_t k = 0;       // best tokens to return, [0, kMaxSummaryK]; 0 = skip the row
};

struct TopLogit {
  int32_t id;
  float logit;  // penalized
};

// Of the row l' = penalties(sanitize(l)), where sanitize maps NaN to -inf and +inf to FLT_MAX
// (as Sampler::Sample does):
struct LogitsSummary {
  float max_logit = 0.0f;       // max of l' (+inf when a penalty overflowed, -inf when all masked)
  // When max_logit is +inf the row cannot be sampled from its summary (samplers go to the full
  // row), and `top` may hold the overflowed entries as +inf (CPU) or FLT_MAX (CUDA).
  double z = 0.0;               // sum over the vocabulary of exp((l' - max_logit) * inv_t)
  std::vector<TopLogit> top;    // the min(k, vocab) best: higher logit first, ties to the lower id
};

// NaN -> -inf (never chosen), +inf -> FLT_MAX (so l - max stays defined).
SLIM_HOST_DEVICE inline float SanitizeLogit(float v) { return v != v ? -INFINITY : (v > FLT_MAX ? FLT_MAX : v); }

// llama.cpp's penalties on one (sanitized) logit that occurs `count` times in the window: a
// positive logit is divided by the repetition penalty, any other multiplied, then
// count * frequency + presence is subtracted. Written with explicit fused multiply-adds so that
// host compilers (which may contract a * b + c on their own) and nvcc give the same bits.
SLIM_HOST_DEVICE inline float PenalizeLogit(float l, int32_t count, float repetition, float frequency,
                                            float presence) {
  const float sub = fmaf(static_cast<float>(count), frequency, presence);
  return l <= 0.0f ? fmaf(l, repetition, -sub) : l / repetition - sub;
}

// InvalidArgument unless k is in [0, min(kMaxSummaryK, vocab)] and the penalty ids are distinct
// and in [0, vocab).
Status ValidateSummaryRequest(const SummaryRequest& req, int64_t vocab);

// Reusable host buffers of SummarizeLogits (about 12 bytes per vocabulary entry).
struct SummaryScratch {
  std::vector<float> work, weights;
  std::vector<int32_t> ids;
};

// The host reference: `out` from `logits` [vocab] per `req` (which must be valid; k == 0 leaves
// `out` empty). z is accumulated in double with the Sampler's own exp, so on the host it equals
// the normalizer Sampler::Sample computes for the same row.
void SummarizeLogits(std::span<const float> logits, const SummaryRequest& req, SummaryScratch* scratch,
                     LogitsSummary* out);

// SummarizeLogits over rows [n, vocab] (row r at rows + r * stride) in host memory, one request
// per row; validates every request first.
Status SummarizeRows(const float* rows, int64_t n, int64_t vocab, int64_t stride,
                     std::span<const SummaryRequest> requests, SummaryScratch* scratch,
                     std::vector<LogitsSummary>* out);

}  // namespace slim
