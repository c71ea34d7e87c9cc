// The logits summary on the device (Backend::SummarizeLogits; definition and host reference:
// engine/sampler/logits_summary.h): per row, penalties applied in place and undone at the end,
// the max, the softmax normalizer z (double) and the k best (id, logit), best first with ties to
// the lower id. Three launches on one stream: penalize; per (row, chunk of kChunk logits) max,
// partial sum and the chunk's k best by radix select; per row merge of the chunks, bitonic sort
// of the k best, restore of the penalized logits.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "engine/core/status.h"
#include "engine/sampler/logits_summary.h"

namespace slim::cuda {

// One row's request as the kernels read it (a staged array, one per row).
struct SummaryRowArgs {
  int32_t pair_begin = 0;  // penalty pairs [pair_begin, pair_begin + n_pairs) of pair_ids/counts
  int32_t n_pairs = 0;     // ids distinct within the row
  int32_t k = 0;           // [0, min(kMaxSummaryK, vocab)]; 0 skips the row
  float repetition_penalty = 1.0f, frequency_penalty = 0.0f, presence_penalty = 0.0f;
  float inv_t = 1.0f;
  int32_t pad = 0;
};

// One row's result; top entries follow in SummaryOutput::top.
struct SummaryRowOut {
  double z;         // sum of exp((l' - max_logit) * inv_t)
  float max_logit;  // +inf when a penalty overflowed, -inf when the row is all masked
  int32_t n_top;    // k (0 for a skipped row)
};

struct LogitsSummaryArgs {
  float* logits = nullptr;  // [n_rows, stride] f32, vocab used; changed and restored in place
  int64_t stride = 0;
  int32_t vocab = 0;
  int32_t n_rows = 0;                       // [1, 1024]
  int32_t k_max = 0;                        // max of the rows' k, [1, kMaxSummaryK]
  const SummaryRowArgs* rows = nullptr;     // [n_rows] device
  const int32_t* pair_ids = nullptr;        // [n_pairs] device
  const int32_t* pair_counts = nullptr;     // [n_pairs] device
  int32_t n_pairs = 0;
  void* scratch = nullptr;  // LogitsSummaryScratchBytes; starts with the output (SummaryOutputBytes)
};

// Where the output lies at the start of the scratch (copy SummaryOutputBytes to the host):
// SummaryRowOut [n_rows], then TopLogit [n_rows, k_max].
size_t SummaryOutputBytes(int32_t n_rows, int32_t k_max);
size_t LogitsSummaryScratchBytes(int32_t n_rows, int32_t vocab, int32_t k_max, int32_t n_pairs);

Status LaunchLogitsSummary(const LogitsSummaryArgs& a, cudaStream_t stream);

}  // namespace slim::cuda
