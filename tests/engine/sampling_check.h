// Engine-level checks of the sampling path (Engine::PrefillAndSample / DecodeAndSample and
// Generate, which sample from the backend's logits summary where it decides) against Prefill /
// Decode + Sampler::Sample on the full logits. Used by tests/engine (CPU) and tests/cuda.
#pragma once

#include <gtest/gtest.h>

#include <span>
#include <vector>

#include "engine/engine.h"
#include "tests/engine/engine_test_util.h"

namespace slim::testing {

// Tokens of PrefillAndSample + DecodeAndSample, three sequences in one batch with different
// params, against Prefill + Decode + Sample on the full rows.
inline void BatchAgreesWithFullRows(Engine& e, int steps) {
  const int32_t vocab = e.config().vocab_size;
  std::vector<SamplingParams> params(3);
  params[1].temperature = 0.9f;
  params[1].top_k = 40;
  params[1].seed = 7;
  params[1].repetition_penalty = 1.3f;
  params[1].frequency_penalty = 0.2f;
  params[1].logprobs = 3;
  params[2].temperature = 0.8f;  // top-p over the vocabulary: sampled from the row
  params[2].top_p = 0.9f;
  params[2].seed = 9;
  std::vector<Sampler> fast, full;
  for (const SamplingParams& p : params) {
    fast.emplace_back(p, vocab);
    full.emplace_back(p, vocab);
  }
  std::vector<std::vector<int32_t>> hist_fast, hist_full;
  const SamplingCounters before = e.sampling_counters();
  for (int s = 0; s < 3; ++s) {
    const auto prompt = RandomIds(20 + 7 * s, vocab, 40 + static_cast<uint32_t>(s));
    const kv::SeqId a = 100 + s, b = 200 + s;
    auto pa = e.PrefillAndSample(a, prompt, SampleSpec{&fast[static_cast<size_t>(s)], prompt});
    ASSERT_TRUE(pa.ok()) << pa.status().ToString();
    EXPECT_TRUE(pa->logits.empty());
    auto pb = e.Prefill(b, prompt);
    ASSERT_TRUE(pb.ok());
    const SampleResult rb = full[static_cast<size_t>(s)].Sample(pb->logits, prompt);
    EXPECT_EQ(pa->sampled.token, rb.token) << "prefill of sequence " << s;
    hist_fast.push_back(prompt);
    hist_full.push_back(prompt);
    hist_fast.back().push_back(pa->sampled.token);
    hist_full.back().push_back(rb.token);
  }
  for (int step = 0; step < steps; ++step) {
    std::vector<DecodeItem> ia, ib;
    std::vector<SampleSpec> specs;
    for (size_t s = 0; s < 3; ++s) {
      ia.push_back({static_cast<kv::SeqId>(100 + s), hist_fast[s].back()});
      ib.push_back({static_cast<kv::SeqId>(200 + s), hist_full[s].back()});
      specs.push_back({&fast[s], hist_fast[s]});
    }
    std::vector<SampleResult> got;
    ASSERT_TRUE(e.DecodeAndSample(ia, specs, &got).ok());
    std::vector<float> logits;
    ASSERT_TRUE(e.Decode(ib, &logits).ok());
    for (size_t s = 0; s < 3; ++s) {
      const std::span<const float> row(logits.data() + s * static_cast<size_t>(vocab), static_cast<size_t>(vocab));
      const SampleResult want = full[s].Sample(row, hist_full[s]);
      EXPECT_EQ(got[s].token, want.token) << "sequence " << s << " step " << step;
      EXPECT_NEAR(got[s].logprob, want.logprob, 1e-4) << "sequence " << s << " step " << step;
      ASSERT_EQ(got[s].top.size(), want.top.size());
      for (size_t i = 0; i < want.top.size(); ++i) EXPECT_EQ(got[s].top[i].id, want.top[i].id);
      hist_fast[s].push_back(got[s].token);
      hist_full[s].push_back(want.token);
    }
  }
  const SamplingCounters after = e.sampling_counters();
  // Sequences 0 and 1 are decided by the summary, sequence 2 needs its row.
  EXPECT_EQ(after.from_summary - before.from_summary, 2 * (steps + 1));
  EXPECT_EQ(after.from_full_row - before.from_full_row, steps + 1);
  for (int s = 0; s < 3; ++s) {
    EXPECT_TRUE(e.Release(100 + s).ok());
    EXPECT_TRUE(e.Release(200 + s).ok());
  }
}

// Greedy Generate (summary path) against the same loop over Prefill / Decode + Sample.
inline void GenerateAgreesWithFullRows(Engine& e, int n_tokens) {
  const int32_t vocab = e.config().vocab_size;
  const auto prompt = RandomIds(33, vocab, 5);
  SamplingParams greedy;
  greedy.logprobs = 2;
  StopParams stop;
  stop.max_tokens = n_tokens;
  stop.ignore_eos = true;
  const SamplingCounters before = e.sampling_counters();
  auto g = e.Generate(prompt, greedy, stop, nullptr, 300);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_EQ(g->token_ids.size(), static_cast<size_t>(n_tokens));
  EXPECT_EQ(e.sampling_counters().from_summary - before.from_summary, n_tokens);
  EXPECT_EQ(e.sampling_counters().from_full_row, before.from_full_row);

  Sampler sampler(greedy, vocab);
  std::vector<int32_t> history = prompt, tokens;
  auto pre = e.Prefill(301, prompt);
  ASSERT_TRUE(pre.ok()) << pre.status().ToString();
  std::vector<float> logits = std::move(pre->logits);
  for (int i = 0; i < n_tokens; ++i) {
    const SampleResult r = sampler.Sample(logits, history);
    tokens.push_back(r.token);
    history.push_back(r.token);
    if (i + 1 == n_tokens) break;
    const DecodeItem it{301, r.token};
    ASSERT_TRUE(e.Decode({&it, 1}, &logits).ok());
  }
  EXPECT_TRUE(e.Release(301).ok());
  EXPECT_EQ(g->token_ids, tokens);
}

}  // namespace slim::testing
