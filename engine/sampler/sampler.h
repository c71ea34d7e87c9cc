// Token sampling: greedy, temperature, top-k, top-p, seeded RNG, repetition / frequency /
// presence penalties, optional logprobs. Stop conditions live in stop_checker.h.
// Not thread-safe; one Sampler per sequence.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/core/status.h"

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

class Sampler {
 public:
  // `params` must have passed Validate.
  Sampler(const SamplingParams& params, int32_t vocab_size);
  // `logits`: [vocab_size]; `history`: prompt + generated ids so far (for penalties).
  SampleResult Sample(std::span<const float> logits, std::span<const int32_t> history);

 private:
  SamplingParams p_;
  int32_t vocab_size_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
  std::vector<int32_t> idx_;
};

}  // namespace slim
