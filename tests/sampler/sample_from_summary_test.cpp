// Sampling from a logits summary (SummaryRequestFor -> SummarizeLogits -> SampleFromSummary)
// against Sampler::Sample on the full row: the same tokens, top ids and RNG stream over many
// seeded steps for greedy / top-k (with top-p, min-p) / penalties / logprobs, on rows with ties,
// NaN and infinities; and the cases that must fall back to the full row.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <vector>

#include "engine/sampler/logits_summary.h"
#include "engine/sampler/sampler.h"

namespace slim {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Logits on a grid of 1/4 (many ties near the top), with some NaN and -inf; +inf when asked.
std::vector<float> TiedLogits(size_t n, uint64_t seed, bool with_pos_inf = false) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 2.5f);
  std::vector<float> v(n);
  for (float& x : v) x = std::round(dist(rng) * 4.0f) / 4.0f;
  for (int i = 0; i < 8; ++i) v[rng() % n] = std::numeric_limits<float>::quiet_NaN();
  for (int i = 0; i < 8; ++i) v[rng() % n] = -kInf;
  if (with_pos_inf) v[rng() % n] = kInf;
  return v;
}

// Two samplers with the same params (and seed): one samples full rows, the other summaries.
class TwoPaths {
 public:
  TwoPaths(const SamplingParams& p, int32_t vocab) : full_(p, vocab), summary_(p, vocab) {}

  // One step; returns whether the summary decided (the other sampler then used the full row).
  bool Step(const std::vector<float>& logits, std::span<const int32_t> history, SampleResult* a, SampleResult* b) {
    *a = full_.Sample(logits, history);
    std::optional<SampleResult> r;
    if (std::optional<SummaryRequest> req = summary_.SummaryRequestFor(history)) {
      LogitsSummary s;
      SummarizeLogits(logits, *req, &scratch_, &s);
      r = summary_.SampleFromSummary(s);
    }
    const bool decided = r.has_value();
    *b = decided ? *r : summary_.Sample(logits, history);
    return decided;
  }

 private:
  Sampler full_, summary_;
  SummaryScratch scratch_;
};

// Equal (also both -inf, next to a FLT_MAX logit) or within 1e-6.
void ExpectLogprob(float a, float b, const std::string& what) {
  if (a == b) return;
  EXPECT_NEAR(a, b, 1e-6) << what;
}

void ExpectSame(const SampleResult& a, const SampleResult& b, const std::string& what) {
  EXPECT_EQ(a.token, b.token) << what;
  ExpectLogprob(a.logprob, b.logprob, what);
  ASSERT_EQ(a.top.size(), b.top.size()) << what;
  for (size_t i = 0; i < a.top.size(); ++i) {
    EXPECT_EQ(a.top[i].id, b.top[i].id) << what << " top " << i;
    ExpectLogprob(a.top[i].logprob, b.top[i].logprob, what + " top " + std::to_string(i));
  }
}

// Runs `steps` steps with fresh logits each, the sampled tokens appended to the history.
// Returns how many steps the summary decided.
int RunSteps(const SamplingParams& p, int32_t vocab, int steps, uint64_t seed, const std::string& what) {
  TwoPaths two(p, vocab);
  std::vector<int32_t> history;
  std::mt19937 rng(static_cast<uint32_t>(seed));
  for (int i = 0; i < 24; ++i) history.push_back(static_cast<int32_t>(rng() % 64));  // repeats: counts > 1
  int decided = 0;
  for (int step = 0; step < steps; ++step) {
    const auto logits = TiedLogits(static_cast<size_t>(vocab), seed * 1000 + static_cast<uint64_t>(step), step % 7 == 3);
    // The penalized tokens get the largest logits, so the penalties decide the top.
    std::vector<float> row = logits;
    for (int32_t t : history) row[static_cast<size_t>(t)] = 9.0f + static_cast<float>(t % 3) * 0.25f;
    SampleResult a, b;
    decided += two.Step(row, history, &a, &b);
    ExpectSame(a, b, what + " step " + std::to_string(step));
    if (::testing::Test::HasFailure()) return decided;
    history.push_back(a.token);
  }
  return decided;
}

TEST(SampleFromSummaryTest, GreedyMatchesSample) {
  for (int32_t logprobs : {0, 1, 5, 20}) {
    for (float rep : {1.0f, 1.3f}) {
      SamplingParams p;
      p.logprobs = logprobs;
      p.repetition_penalty = rep;
      p.frequency_penalty = rep == 1.0f ? 0.0f : 0.2f;
      p.presence_penalty = rep == 1.0f ? 0.0f : -0.1f;
      const std::string what = "greedy logprobs " + std::to_string(logprobs) + " rep " + std::to_string(rep);
      EXPECT_EQ(RunSteps(p, 5000, 30, 11 + static_cast<uint64_t>(logprobs), what), 30) << what;
    }
  }
}

TEST(SampleFromSummaryTest, TopKMatchesSampleOverManySeeds) {
  int cases = 0;
  for (int32_t top_k : {1, 2, 20, 64, 256}) {
    for (float top_p : {1.0f, 0.8f}) {
      for (float min_p : {0.0f, 0.05f}) {
        for (bool penalties : {false, true}) {
          SamplingParams p;
          p.temperature = (cases % 3 == 0) ? 0.6f : 1.3f;
          p.top_k = top_k;
          p.top_p = top_p;
          p.min_p = min_p;
          p.seed = 1000 + static_cast<uint64_t>(cases);
          p.logprobs = cases % 2 == 0 ? 0 : 3;
          if (penalties) {
            p.repetition_penalty = 1.2f;
            p.frequency_penalty = 0.3f;
            p.presence_penalty = 0.1f;
            p.penalty_last_n = cases % 4 == 1 ? -1 : 16;
          }
          const std::string what = "top_k " + std::to_string(top_k) + " top_p " + std::to_string(top_p) + " min_p " +
                                   std::to_string(min_p) + " penalties " + std::to_string(penalties);
          EXPECT_EQ(RunSteps(p, 4099, 40, 77 + static_cast<uint64_t>(cases), what), 40) << what;
          ++cases;
        }
      }
    }
  }
}

TEST(SampleFromSummaryTest, LargeVocabularies) {
  for (int32_t vocab : {49152, 128256}) {
    SamplingParams p;
    p.temperature = 0.9f;
    p.top_k = 40;
    p.seed = 5;
    p.logprobs = 2;
    EXPECT_EQ(RunSteps(p, vocab, 12, 3, "top-k vocab " + std::to_string(vocab)), 12);
    EXPECT_EQ(RunSteps(SamplingParams{}, vocab, 6, 4, "greedy vocab " + std::to_string(vocab)), 6);
  }
}

TEST(SampleFromSummaryTest, TopKDrawsInBestFirstOrder) {
  // The top-k candidates are walked best first (ties to the lower id) whatever selection found
  // them, so the seeded draw is the inverse CDF over that order. 8 ids, k = 4: the nth_element
  // path of the selection.
  std::vector<float> logits(8, -5.0f);
  const double probs[4] = {0.1, 0.2, 0.3, 0.4};
  for (int i = 0; i < 4; ++i) logits[static_cast<size_t>(i)] = static_cast<float>(std::log(probs[i]));
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 4;
  p.seed = 42;
  Sampler s(p, 8);
  std::mt19937_64 rng(42);
  for (int i = 0; i < 16; ++i) {
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    // Best first: id 3 (0.4), 2 (0.3), 1 (0.2), 0 (0.1); weights are relative to the top token.
    const int32_t expected = u < 0.4 ? 3 : u < 0.7 ? 2 : u < 0.9 ? 1 : 0;
    EXPECT_EQ(s.Sample(logits, {}).token, expected) << "draw " << i << " u " << u;
  }
}

TEST(SampleFromSummaryTest, WholeVocabularyParamsNeedTheRow) {
  SamplingParams p;
  p.temperature = 0.8f;  // plain temperature
  EXPECT_FALSE(Sampler(p, 1000).SummaryRequestFor({}).has_value());
  p.top_p = 0.9f;  // top-p over the vocabulary
  EXPECT_FALSE(Sampler(p, 1000).SummaryRequestFor({}).has_value());
  p.top_p = 1.0f;
  p.min_p = 0.1f;  // min-p over the vocabulary
  EXPECT_FALSE(Sampler(p, 1000).SummaryRequestFor({}).has_value());
  p.min_p = 0.0f;
  p.top_k = 1000;  // top_k == vocab truncates nothing
  EXPECT_FALSE(Sampler(p, 1000).SummaryRequestFor({}).has_value());
  p.top_k = kMaxSummaryK + 1;  // more than a summary holds
  EXPECT_FALSE(Sampler(p, 1000).SummaryRequestFor({}).has_value());
  p.top_k = kMaxSummaryK;
  const auto req = Sampler(p, 1000).SummaryRequestFor({});
  ASSERT_TRUE(req.has_value());
  EXPECT_EQ(req->k, kMaxSummaryK);
  EXPECT_FLOAT_EQ(req->inv_t, 1.0f / 0.8f);
  // Greedy: k covers the logprobs; tiny temperatures are greedy with 1/T = 1.
  SamplingParams g;
  g.logprobs = 7;
  g.temperature = 1e-45f;
  const auto greq = Sampler(g, 1000).SummaryRequestFor({});
  ASSERT_TRUE(greq.has_value());
  EXPECT_EQ(greq->k, 7);
  EXPECT_EQ(greq->inv_t, 1.0f);
  // The whole-vocabulary cases sample from the row, identically.
  SamplingParams w;
  w.temperature = 0.8f;
  w.top_p = 0.9f;
  w.seed = 3;
  EXPECT_EQ(RunSteps(w, 3000, 10, 9, "top-p"), 0);
}

TEST(SampleFromSummaryTest, UndecidableSummariesLeaveTheSamplerUntouched) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 3;
  p.seed = 8;
  p.logprobs = 2;
  Sampler a(p, 100), b(p, 100);
  std::vector<float> masked(100, -kInf);  // Sample draws uniformly; the summary cannot say so
  LogitsSummary s;
  SummaryScratch scratch;
  SummarizeLogits(masked, *b.SummaryRequestFor({}), &scratch, &s);
  EXPECT_FALSE(b.SampleFromSummary(s).has_value());
  LogitsSummary overflow = s;  // a penalty pushed a logit to +inf
  overflow.max_logit = kInf;
  EXPECT_FALSE(b.SampleFromSummary(overflow).has_value());
  const auto logits = TiedLogits(100, 5);
  SummarizeLogits(logits, *b.SummaryRequestFor({}), &scratch, &s);
  LogitsSummary short_top = s;  // fewer entries than top_k
  short_top.top.resize(2);
  EXPECT_FALSE(b.SampleFromSummary(short_top).has_value());
  // None of that drew from b's RNG: both samplers go on with the same stream.
  for (int i = 0; i < 20; ++i) {
    SummarizeLogits(logits, *b.SummaryRequestFor({}), &scratch, &s);
    const auto r = b.SampleFromSummary(s);
    ASSERT_TRUE(r.has_value());
    ExpectSame(a.Sample(logits, {}), *r, "draw " + std::to_string(i));
  }
}

TEST(SampleFromSummaryTest, ReferenceSummaryOfATiedRow) {
  // Ties at the top go to the lower ids; NaN counts as -inf, +inf as FLT_MAX; z is over the
  // penalized row.
  std::vector<float> row = {1.0f, 3.0f, std::numeric_limits<float>::quiet_NaN(), 3.0f, -kInf, 2.0f, 3.0f, 0.5f};
  SummaryRequest req;
  req.k = 4;
  req.inv_t = 0.5f;
  req.repetition_penalty = 2.0f;
  req.penalties = {{6, 1}};  // 3.0 -> 1.5
  LogitsSummary s;
  SummaryScratch scratch;
  SummarizeLogits(row, req, &scratch, &s);
  EXPECT_EQ(s.max_logit, 3.0f);
  ASSERT_EQ(s.top.size(), 4u);
  EXPECT_EQ(s.top[0].id, 1);
  EXPECT_EQ(s.top[1].id, 3);
  EXPECT_EQ(s.top[2].id, 5);
  EXPECT_EQ(s.top[3].id, 6);
  EXPECT_EQ(s.top[3].logit, 1.5f);
  double z = 0.0;
  for (float l : {1.0f, 3.0f, 3.0f, 2.0f, 1.5f, 0.5f}) z += std::exp((l - 3.0) * 0.5);
  EXPECT_NEAR(s.z, z, 1e-6);
  row[0] = kInf;
  SummarizeLogits(row, req, &scratch, &s);
  EXPECT_EQ(s.max_logit, std::numeric_limits<float>::max());
  EXPECT_EQ(s.top[0].id, 0);
}

TEST(SampleFromSummaryTest, RequestValidation) {
  SummaryRequest req;
  req.k = 5;
  EXPECT_TRUE(ValidateSummaryRequest(req, 10).ok());
  req.k = 11;
  EXPECT_FALSE(ValidateSummaryRequest(req, 10).ok());
  req.k = kMaxSummaryK + 1;
  EXPECT_FALSE(ValidateSummaryRequest(req, 100000).ok());
  req.k = 3;
  req.penalties = {{1, 1}, {4, 2}, {1, 1}};
  EXPECT_FALSE(ValidateSummaryRequest(req, 10).ok());
  req.penalties = {{10, 1}};
  EXPECT_FALSE(ValidateSummaryRequest(req, 10).ok());
}

}  // namespace
}  // namespace slim
