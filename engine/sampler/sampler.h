// Token sampling: greedy, temperature, top-k, top-p, seeded RNG, repetition / frequency /
// presence penalties, optional logprobs. Stop conditions live in stop_checker.h.
// Not thread-safe; one Sampler per sequence.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/core/status.h"
#include "engine/sampler/logits_summary.h"

namespace slim {

struct SamplingParams {
  float temperature = 0.0f;         // 0 = greedy; range [0, 100]
  int32_t top_k = 0;                // 0 = off; range [0, vocab]
  float top_p = 1.0f;               // (0, 1]
  float min_p = 0.0f;               // [0, 1)
  uint64_t seed = 0;
  float repetition_penalty = 1.0f;  // (0, 10]; llama.cpp semantics (divide positive logits)
  float frequency_penalty = 0.0f;   // [-2, 2]
  float presence_penalty = 0.0f;    // [-2, 2]
  int32_t penalty_last_n = 64;      // tokens of history the penalties look at; -1 = all
  int32_t logprobs = 0;             // top-n logprobs to report, [0, 20]

  // InvalidArgument naming the field, e.g. "top_p must be in (0, 1], got 1.5".
  Status Validate(int32_t vocab_size) const;
};

struct TokenLogprob {
  int32_t id;
  float logprob;
};

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;                 // of the chosen token (after penalties/temperature)
  std::vector<TokenLogprob> top;        // when params.logprobs > 0
};

// Pipeline per call: penalties -> (greedy: argmax, ties to the lowest id) or
// (top-k -> softmax(logits / temperature) -> top-p -> min-p -> seeded draw).
// Logprobs are log-softmax over the whole vocabulary of the penalized logits divided by the
// temperature (1 for greedy), i.e. before truncation by top-k/top-p/min-p.
//
// Sampling from a summary (logits_summary.h) instead of the row: SummaryRequestFor says what
// to summarize, SampleFromSummary gives exactly Sample's result from it (token, top ids, RNG
// state; logprobs up to the accuracy of the summary's z) for greedy, and for temperature > 0
// with 0 < top_k < vocab, top_k <= kMaxSummaryK (top-p and min-p then act within the k).
// Anything else (top-p / min-p / plain temperature over the whole vocabulary) needs the row.
class Sampler {
 public:
  // `params` must have passed Validate.
  Sampler(const SamplingParams& params, int32_t vocab_size);
  // `logits`: [vocab_size]; `history`: prompt + generated ids so far (for penalties; ids
  // outside [0, vocab_size) are ignored). NaN logits count as -inf. Returns token -1 when
  // logits.size() != vocab_size.
  SampleResult Sample(std::span<const float> logits, std::span<const int32_t> history);

  // The summary of the next row that SampleFromSummary needs, with the penalties of `history`
  // (the same history Sample would get); nullopt when these params always need the full row.
  std::optional<SummaryRequest> SummaryRequestFor(std::span<const int32_t> history);
  // Sample's result for the row that `s` summarizes (made per SummaryRequestFor), or nullopt
  // when the summary cannot decide exactly (all logits masked, an overflowed penalty, too few
  // top entries): then call Sample on the full row; the sampler's state is unchanged.
  std::optional<SampleResult> SampleFromSummary(const LogitsSummary& s);

 private:
  // 1 / temperature, and whether the call is greedy.
  float InverseTemperature(bool* greedy) const;
  // The distinct ids of the penalty window with their counts (empty when penalties are off).
  void CountPenalties(std::span<const int32_t> history, std::vector<PenaltyCount>* out);
  void ApplyPenalties(std::span<const int32_t> history);
  // Writes the ids of the k best tokens (highest logit, ties to the lowest id) to idx_[0, k),
  // sorted best first (so that the draw order does not depend on how they were found).
  void SelectTop(size_t k);
  // Top-p and min-p within the sorted top-k candidates idx_[0, k) (probs_ by id); returns n >= 1.
  size_t TruncateTopK(size_t k) const;
  // Reorders idx_ so that idx_[0, n) are the candidates kept by top-k, top-p and min-p (probs_
  // must hold the temperature-scaled weights); returns n >= 1.
  // `z` is the sum of probs_.
  size_t Truncate(float inv_t, float max_logit, double z);
  // Top-p over the whole vocabulary without sorting it: buckets by log-weight, then sorts only
  // the bucket where the cumulative mass crosses top_p. Fills idx_[0, n); returns n.
  size_t Nucleus(float inv_t, float max_logit, double z);
  // Draws from idx_[0, n) (or all ids in order when `all`) proportionally to probs_.
  int32_t Draw(size_t n, bool all);

  SamplingParams p_;
  int32_t vocab_size_;
  std::mt19937_64 rng_;
  std::vector<float> work_;      // [vocab] penalized logits
  std::vector<int32_t> idx_;     // [vocab + 1] candidate ids
  std::vector<float> probs_;     // [vocab] exp((logit - max) / T) in [0, 1], by token id
  std::vector<int32_t> counts_;  // [vocab] scratch occurrence counts, all zero between calls
  std::vector<int32_t> scratch_;    // [vocab + 1] crossing bucket of Nucleus
  std::vector<double> block_sums_;  // [vocab / 256] scratch for Draw
  std::vector<PenaltyCount> penalties_;  // scratch of ApplyPenalties
  std::vector<float> top_logits_, top_weights_;  // [k rounded up to 8] scratch of SampleFromSummary
};

}  // namespace slim
