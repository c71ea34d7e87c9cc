// Sampler: greedy and ties, the sampled distribution against softmax, top-k / top-p / min-p
// support sets, seed determinism, penalties, logprobs and every Validate error.
#include "engine/sampler/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <vector>

namespace slim {
namespace {

// Portable uniform logits in [-scale, scale]; fresh per seed.
std::vector<float> RandomLogits(size_t n, uint64_t seed, float scale = 3.0f) {
  std::mt19937_64 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>((static_cast<double>(rng() >> 11) * 0x1.0p-53 * 2 - 1) * scale);
  return v;
}

std::vector<double> Softmax(const std::vector<float>& l, double temperature) {
  const double mx = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size());
  double z = 0;
  for (size_t i = 0; i < l.size(); ++i) z += p[i] = std::exp((l[i] - mx) / temperature);
  for (double& x : p) x /= z;
  return p;
}

// Ids ordered by descending logit, ties to the lowest id.
std::vector<int32_t> Ranked(const std::vector<float>& l) {
  std::vector<int32_t> r(l.size());
  std::iota(r.begin(), r.end(), 0);
  std::stable_sort(r.begin(), r.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  return r;
}

SamplingParams Params(float temperature, uint64_t seed = 1234) {
  SamplingParams p;
  p.temperature = temperature;
  p.seed = seed;
  return p;
}

// Draws `n` tokens from the same logits; returns counts per id.
std::map<int32_t, int> Draw(const SamplingParams& p, const std::vector<float>& logits, int n) {
  EXPECT_TRUE(p.Validate(static_cast<int32_t>(logits.size())).ok());
  Sampler s(p, static_cast<int32_t>(logits.size()));
  std::map<int32_t, int> counts;
  for (int i = 0; i < n; ++i) ++counts[s.Sample(logits, {}).token];
  return counts;
}

std::set<int32_t> Support(const std::map<int32_t, int>& counts) {
  std::set<int32_t> s;
  for (auto& [id, c] : counts) s.insert(id);
  return s;
}

// Pearson chi-square of observed counts against expected probabilities (over all ids).
double ChiSquare(const std::map<int32_t, int>& counts, const std::vector<double>& probs, int n) {
  double chi = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] == 0) {
      EXPECT_EQ(counts.count(static_cast<int32_t>(i)), 0u) << "drew impossible id " << i;
      continue;
    }
    const double expected = probs[i] * n;
    const auto it = counts.find(static_cast<int32_t>(i));
    const double observed = it == counts.end() ? 0 : it->second;
    chi += (observed - expected) * (observed - expected) / expected;
  }
  return chi;
}

// The nucleus a reference implementation picks: full sort, cumulative >= top_p.
std::set<int32_t> ReferenceNucleus(const std::vector<float>& logits, double t, double top_p, int top_k) {
  auto ranked = Ranked(logits);
  if (top_k > 0) ranked.resize(top_k);
  std::vector<float> kept;
  for (int32_t id : ranked) kept.push_back(logits[id]);
  const auto probs = Softmax(kept, t);
  std::set<int32_t> out;
  double cum = 0;
  for (size_t i = 0; i < ranked.size(); ++i) {
    out.insert(ranked[i]);
    cum += probs[i];
    if (cum >= top_p) break;
  }
  return out;
}

TEST(SamplerTest, GreedyPicksArgmax) {
  const auto logits = RandomLogits(49152, 7);
  const int32_t best = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  Sampler s(Params(0.0f), 49152);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(s.Sample(logits, {}).token, best);
}

TEST(SamplerTest, GreedyIgnoresTruncationParams) {
  const auto logits = RandomLogits(1000, 8);
  const int32_t best = Ranked(logits)[0];
  SamplingParams p = Params(0.0f);
  p.top_k = 3;
  p.top_p = 0.1f;
  p.min_p = 0.5f;
  Sampler s(p, 1000);
  EXPECT_EQ(s.Sample(logits, {}).token, best);
}

TEST(SamplerTest, GreedyTiesGoToLowestId) {
  std::vector<float> logits = RandomLogits(100, 9, 1.0f);
  logits[42] = 5.0f;
  logits[17] = 5.0f;
  logits[80] = 5.0f;
  Sampler s(Params(0.0f), 100);
  EXPECT_EQ(s.Sample(logits, {}).token, 17);
}

TEST(SamplerTest, TopKTiesGoToLowestId) {
  // Four tokens tie for the top; top_k = 2 keeps the two lowest ids.
  std::vector<float> logits = RandomLogits(64, 10, 1.0f);
  for (int id : {50, 3, 33, 12}) logits[id] = 4.0f;
  SamplingParams p = Params(1.0f);
  p.top_k = 2;
  EXPECT_EQ(Support(Draw(p, logits, 2000)), (std::set<int32_t>{3, 12}));
}

TEST(SamplerTest, NanLogitsAreNeverChosen) {
  std::vector<float> logits = RandomLogits(32, 11, 1.0f);
  logits[5] = std::numeric_limits<float>::quiet_NaN();
  Sampler g(Params(0.0f), 32);
  EXPECT_NE(g.Sample(logits, {}).token, 5);
  const auto counts = Draw(Params(2.0f), logits, 5000);
  EXPECT_EQ(counts.count(5), 0u);
}

TEST(SamplerTest, TemperatureDistributionMatchesSoftmax) {
  const int kDraws = 200000;
  for (float t : {0.5f, 1.0f, 1.7f}) {
    const auto logits = RandomLogits(16, 100 + static_cast<uint64_t>(t * 10), 2.0f);
    const auto counts = Draw(Params(t, 99), logits, kDraws);
    const double chi = ChiSquare(counts, Softmax(logits, t), kDraws);
    // 15 degrees of freedom: the 99.99% quantile is about 42.
    EXPECT_LT(chi, 42.0) << "temperature " << t;
  }
}

TEST(SamplerTest, FullVocabDistributionMatchesSoftmax) {
  // 1000 ids span several blocks of the block-wise draw, with a remainder.
  const int kDraws = 200000;
  const auto logits = RandomLogits(1000, 17, 1.0f);
  const auto counts = Draw(Params(0.8f, 3), logits, kDraws);
  // 999 degrees of freedom: mean 999, sd 44.7; five sd above the mean.
  EXPECT_LT(ChiSquare(counts, Softmax(logits, 0.8), kDraws), 1223.0);
}

TEST(SamplerTest, TopPRenormalizesOverTheNucleus) {
  const int kDraws = 200000;
  const auto logits = RandomLogits(1000, 18, 3.0f);
  SamplingParams p = Params(0.7f, 4);
  p.top_p = 0.6f;
  const auto nucleus = ReferenceNucleus(logits, 0.7, 0.6, 0);
  ASSERT_GT(nucleus.size(), 10u);
  std::vector<float> masked(logits.size(), -std::numeric_limits<float>::infinity());
  for (int32_t id : nucleus) masked[id] = logits[id];
  const auto counts = Draw(p, logits, kDraws);
  const double dof = static_cast<double>(nucleus.size() - 1);
  EXPECT_LT(ChiSquare(counts, Softmax(masked, 0.7), kDraws), dof + 5 * std::sqrt(2 * dof) + 10);
}

TEST(SamplerTest, TopKRenormalizesOverTheKBest) {
  const int kDraws = 100000;
  const auto logits = RandomLogits(64, 21, 2.0f);
  const auto ranked = Ranked(logits);
  SamplingParams p = Params(0.9f, 5);
  p.top_k = 6;
  const auto counts = Draw(p, logits, kDraws);
  std::vector<float> masked(logits.size(), -std::numeric_limits<float>::infinity());
  for (int i = 0; i < 6; ++i) masked[ranked[i]] = logits[ranked[i]];
  // 5 degrees of freedom: the 99.99% quantile is about 25.7.
  EXPECT_LT(ChiSquare(counts, Softmax(masked, 0.9), kDraws), 25.7);
  EXPECT_EQ(Support(counts).size(), 6u);
}

TEST(SamplerTest, TopKSupportOnLargeVocab) {
  const auto logits = RandomLogits(128256, 22);
  const auto ranked = Ranked(logits);
  SamplingParams p = Params(5.0f);  // flat enough that every kept token shows up
  p.top_k = 8;
  const auto counts = Draw(p, logits, 4000);
  EXPECT_EQ(Support(counts), std::set<int32_t>(ranked.begin(), ranked.begin() + 8));
}

// Logits whose softmax at T = 1 is exactly `probs` (up to rounding).
std::vector<float> FromProbs(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

TEST(SamplerTest, TopPKeepsSmallestNucleus) {
  // Ids shuffled so that order of ids differs from order of probability.
  const auto logits = FromProbs({0.05, 0.3, 0.1, 0.5, 0.05});
  SamplingParams p = Params(1.0f);
  p.top_p = 0.75f;  // 0.5 + 0.3 >= 0.75
  EXPECT_EQ(Support(Draw(p, logits, 3000)), (std::set<int32_t>{3, 1}));
  p.top_p = 0.85f;  // needs 0.1 as well
  EXPECT_EQ(Support(Draw(p, logits, 3000)), (std::set<int32_t>{3, 1, 2}));
  p.top_p = 0.4f;  // the top token alone covers it
  EXPECT_EQ(Support(Draw(p, logits, 500)), (std::set<int32_t>{3}));
  p.top_p = 1e-6f;  // always keeps at least one
  EXPECT_EQ(Support(Draw(p, logits, 500)), (std::set<int32_t>{3}));
}

TEST(SamplerTest, TopPOnLargeVocabMatchesReference) {
  // Without top-k the sampler never sorts the vocabulary (it buckets by log-probability and sorts
  // only the bucket where the mass crosses top_p); a sharp and a flat distribution give a small
  // and a large nucleus.
  for (float t : {0.3f, 1.0f}) {
    const auto logits = RandomLogits(49152, 31, 4.0f);
    SamplingParams p = Params(t, 3);
    p.top_p = 0.02f;
    const auto expected = ReferenceNucleus(logits, t, p.top_p, 0);
    ASSERT_GT(expected.size(), 3u) << "temperature " << t;
    const auto got = Support(Draw(p, logits, 40 * static_cast<int>(expected.size())));
    EXPECT_TRUE(std::includes(expected.begin(), expected.end(), got.begin(), got.end()));
    // Frequent enough that every member shows up for the small nucleus.
    if (expected.size() < 50) {
      EXPECT_EQ(got, expected);
    }
  }
}

TEST(SamplerTest, TopPCrossingInTheFarTail) {
  // Tokens below e^-16 of the top weight share one bucket; a top_p this close to 1 crosses there
  // (the sampler then sorts the tail). Tail tokens are rare draws, so this checks that the path
  // works and that whatever is drawn lies in the reference nucleus.
  std::vector<float> logits = RandomLogits(20000, 34, 0.25f);
  for (float& l : logits) l -= 16.35f;  // in [-16.6, -16.1]: all in the tail
  logits[123] = 0.0f;
  SamplingParams p = Params(1.0f, 6);
  p.top_p = 0.9992f;  // needs about half of the tail mass
  const auto expected = ReferenceNucleus(logits, 1.0, p.top_p, 0);
  ASSERT_GT(expected.size(), 1000u);
  ASSERT_LT(expected.size(), 19000u);
  const auto got = Support(Draw(p, logits, 200));
  EXPECT_TRUE(got.count(123));
  EXPECT_TRUE(std::includes(expected.begin(), expected.end(), got.begin(), got.end()));
}

TEST(SamplerTest, TinyTemperatureActsLikeGreedy) {
  const auto logits = RandomLogits(1000, 35);
  const int32_t best = Ranked(logits)[0];
  for (float t : {1e-30f, 1e-45f}) {  // 1/T finite and 1/T overflowing
    for (float top_p : {1.0f, 0.5f}) {
      SamplingParams p = Params(t);
      p.top_p = top_p;
      EXPECT_EQ(Support(Draw(p, logits, 20)), std::set<int32_t>{best}) << t << " " << top_p;
    }
  }
}

TEST(SamplerTest, AllMaskedFallsBackToUniform) {
  std::vector<float> logits(10, -std::numeric_limits<float>::infinity());
  Sampler g(Params(0.0f), 10);
  EXPECT_EQ(g.Sample(logits, {}).token, 0);
  SamplingParams p = Params(1.0f);
  p.top_p = 0.5f;
  const auto got = Support(Draw(p, logits, 500));
  EXPECT_EQ(got, (std::set<int32_t>{0, 1, 2, 3, 4}));
}

TEST(SamplerTest, TopPAfterTopK) {
  const auto logits = RandomLogits(5000, 32, 1.0f);
  SamplingParams p = Params(0.5f, 4);
  p.top_k = 20;
  p.top_p = 0.5f;
  const auto expected = ReferenceNucleus(logits, 0.5, 0.5, 20);
  ASSERT_GT(expected.size(), 1u);
  ASSERT_LT(expected.size(), 20u);
  EXPECT_EQ(Support(Draw(p, logits, 4000)), expected);
}

TEST(SamplerTest, MinPKeepsTokensNearTheTop) {
  const auto logits = FromProbs({0.05, 0.3, 0.1, 0.5, 0.05});
  SamplingParams p = Params(1.0f);
  p.min_p = 0.25f;  // threshold 0.125
  EXPECT_EQ(Support(Draw(p, logits, 3000)), (std::set<int32_t>{3, 1}));
  p.min_p = 0.15f;  // threshold 0.075
  EXPECT_EQ(Support(Draw(p, logits, 3000)), (std::set<int32_t>{3, 1, 2}));
  p.min_p = 0.99f;
  EXPECT_EQ(Support(Draw(p, logits, 500)), (std::set<int32_t>{3}));
  // Temperature sharpens the ratios first: at T = 0.5 the ratio 0.3/0.5 becomes 0.36.
  p.min_p = 0.4f;
  p.temperature = 0.5f;
  EXPECT_EQ(Support(Draw(p, logits, 500)), (std::set<int32_t>{3}));
  p.temperature = 2.0f;  // ratio sqrt(0.6) = 0.77, sqrt(0.2) = 0.45, sqrt(0.1) = 0.32
  EXPECT_EQ(Support(Draw(p, logits, 4000)), (std::set<int32_t>{3, 1, 2}));
}

TEST(SamplerTest, MinPAfterTopP) {
  const auto logits = FromProbs({0.05, 0.3, 0.1, 0.5, 0.05});
  SamplingParams p = Params(1.0f);
  p.top_p = 0.95f;  // {3, 1, 2, one 0.05}
  p.min_p = 0.15f;  // drops the 0.05s anyway
  EXPECT_EQ(Support(Draw(p, logits, 4000)), (std::set<int32_t>{3, 1, 2}));
}

TEST(SamplerTest, SameSeedSameTokens) {
  const auto logits = RandomLogits(49152, 41, 2.0f);
  SamplingParams p = Params(1.2f, 777);
  p.top_k = 50;
  p.top_p = 0.9f;
  Sampler a(p, 49152), b(p, 49152);
  std::vector<int32_t> ta, tb;
  for (int i = 0; i < 200; ++i) {
    ta.push_back(a.Sample(logits, ta).token);
    tb.push_back(b.Sample(logits, tb).token);
  }
  EXPECT_EQ(ta, tb);
  p.seed = 778;
  Sampler c(p, 49152);
  std::vector<int32_t> tc;
  for (int i = 0; i < 200; ++i) tc.push_back(c.Sample(logits, tc).token);
  EXPECT_NE(ta, tc);
}

TEST(SamplerTest, SeedSequenceIsPortable) {
  // The draw uses only mt19937_64 (fully specified by the standard) and our own conversion to
  // double, so these ids are the same with every standard library.
  const auto logits = FromProbs({0.1, 0.2, 0.3, 0.4});
  Sampler s(Params(1.0f, 42), 4);
  std::vector<int32_t> got;
  for (int i = 0; i < 12; ++i) got.push_back(s.Sample(logits, {}).token);
  std::mt19937_64 rng(42);
  std::vector<int32_t> expected;
  for (int i = 0; i < 12; ++i) {
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    expected.push_back(u < 0.1 ? 0 : u < 0.3 ? 1 : u < 0.6 ? 2 : 3);
  }
  EXPECT_EQ(got, expected);
}

TEST(SamplerTest, RepetitionPenaltyDividesPositiveLogits) {
  std::vector<float> logits = RandomLogits(50, 51, 1.0f);
  logits[10] = 2.0f;
  logits[20] = 1.9f;
  SamplingParams p = Params(0.0f);
  Sampler plain(p, 50);
  EXPECT_EQ(plain.Sample(logits, std::vector<int32_t>{10}).token, 10);
  p.repetition_penalty = 1.2f;  // 2.0 / 1.2 = 1.67 < 1.9
  Sampler pen(p, 50);
  EXPECT_EQ(pen.Sample(logits, std::vector<int32_t>{10, 10, 3}).token, 20);
  EXPECT_EQ(pen.Sample(logits, std::vector<int32_t>{3}).token, 10);
}

TEST(SamplerTest, RepetitionPenaltyMultipliesNegativeLogits) {
  std::vector<float> logits(50, -5.0f);
  logits[10] = -1.0f;
  logits[20] = -1.1f;
  SamplingParams p = Params(0.0f);
  p.repetition_penalty = 1.2f;  // -1.0 * 1.2 = -1.2 < -1.1
  Sampler s(p, 50);
  EXPECT_EQ(s.Sample(logits, std::vector<int32_t>{10}).token, 20);
  // A penalty below 1 encourages repeats instead.
  p.repetition_penalty = 0.5f;
  Sampler enc(p, 50);
  EXPECT_EQ(enc.Sample(logits, std::vector<int32_t>{20}).token, 20);
}

TEST(SamplerTest, FrequencyAndPresencePenalties) {
  std::vector<float> logits = RandomLogits(50, 52, 1.0f);
  logits[10] = 2.0f;
  logits[20] = 1.75f;
  const std::vector<int32_t> once{10};
  const std::vector<int32_t> thrice{10, 10, 10};
  SamplingParams p = Params(0.0f);
  p.frequency_penalty = 0.1f;  // once: 1.9 > 1.75; thrice: 1.7 < 1.75
  Sampler f(p, 50);
  EXPECT_EQ(f.Sample(logits, once).token, 10);
  EXPECT_EQ(f.Sample(logits, thrice).token, 20);
  p.frequency_penalty = 0.0f;
  p.presence_penalty = 0.3f;  // independent of the count: 1.7 < 1.75 either way
  Sampler pr(p, 50);
  EXPECT_EQ(pr.Sample(logits, once).token, 20);
  EXPECT_EQ(pr.Sample(logits, thrice).token, 20);
  p.presence_penalty = 0.2f;  // 1.8 > 1.75
  Sampler pr2(p, 50);
  EXPECT_EQ(pr2.Sample(logits, thrice).token, 10);
}

TEST(SamplerTest, PenaltyWindowIsTheLastNTokens) {
  std::vector<float> logits = RandomLogits(50, 53, 1.0f);
  logits[10] = 2.0f;
  logits[20] = 1.9f;
  const std::vector<int32_t> history{10, 1, 2, 3};
  SamplingParams p = Params(0.0f);
  p.repetition_penalty = 1.5f;
  p.penalty_last_n = 3;  // 10 is outside the window
  EXPECT_EQ(Sampler(p, 50).Sample(logits, history).token, 10);
  p.penalty_last_n = 4;
  EXPECT_EQ(Sampler(p, 50).Sample(logits, history).token, 20);
  p.penalty_last_n = -1;
  EXPECT_EQ(Sampler(p, 50).Sample(logits, history).token, 20);
  p.penalty_last_n = 0;  // penalties off
  EXPECT_EQ(Sampler(p, 50).Sample(logits, history).token, 10);
}

TEST(SamplerTest, PenaltiesAreNotCumulativeAcrossCalls) {
  // Counting scratch must be clean after each call: the same call gives the same answer.
  std::vector<float> logits = RandomLogits(50, 54, 1.0f);
  logits[10] = 2.0f;
  logits[20] = 1.75f;
  SamplingParams p = Params(0.0f);
  p.frequency_penalty = 0.1f;
  Sampler s(p, 50);
  const std::vector<int32_t> history{10, 10, 99, -3};  // out-of-range ids are ignored
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.Sample(logits, history).token, 10);
}

TEST(SamplerTest, LogprobsAreLogSoftmax) {
  const auto logits = RandomLogits(20, 61, 2.0f);
  for (float t : {0.0f, 0.7f}) {
    SamplingParams p = Params(t);
    p.logprobs = 20;
    Sampler s(p, 20);
    const SampleResult r = s.Sample(logits, {});
    ASSERT_EQ(r.top.size(), 20u);
    const auto ref = Softmax(logits, t == 0.0f ? 1.0 : t);
    double sum = 0;
    for (size_t i = 0; i < r.top.size(); ++i) {
      sum += std::exp(r.top[i].logprob);
      EXPECT_NEAR(r.top[i].logprob, std::log(ref[r.top[i].id]), 1e-5);
      if (i > 0) {
        EXPECT_GE(r.top[i - 1].logprob, r.top[i].logprob);
      }
    }
    EXPECT_NEAR(sum, 1.0, 1e-5);
    EXPECT_NEAR(r.logprob, std::log(ref[r.token]), 1e-5);
  }
}

TEST(SamplerTest, LogprobsOfPenalizedLogitsForGreedy) {
  std::vector<float> logits = RandomLogits(49152, 62);
  const int32_t best = Ranked(logits)[0];
  SamplingParams p = Params(0.0f);
  p.logprobs = 5;
  p.repetition_penalty = 2.0f;
  Sampler s(p, 49152);
  const SampleResult r = s.Sample(logits, std::vector<int32_t>{best});
  std::vector<float> penalized = logits;
  penalized[best] = logits[best] > 0 ? logits[best] / 2.0f : logits[best] * 2.0f;
  const auto ref = Softmax(penalized, 1.0);
  const auto ranked = Ranked(penalized);
  EXPECT_EQ(r.token, ranked[0]);
  ASSERT_EQ(r.top.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(r.top[i].id, ranked[i]);
    EXPECT_NEAR(r.top[i].logprob, std::log(ref[ranked[i]]), 1e-4);
  }
  EXPECT_FLOAT_EQ(r.logprob, r.top[0].logprob);
}

TEST(SamplerTest, NoLogprobsRequestedLeavesTopEmpty) {
  const auto logits = RandomLogits(100, 63);
  Sampler s(Params(1.0f), 100);
  const SampleResult r = s.Sample(logits, {});
  EXPECT_TRUE(r.top.empty());
  EXPECT_LE(r.logprob, 0.0f);
}

TEST(SamplerTest, WrongLogitsSizeGivesInvalidToken) {
  const auto logits = RandomLogits(99, 64);
  Sampler s(Params(0.0f), 100);
  EXPECT_EQ(s.Sample(logits, {}).token, -1);
}

// ---- Validate ------------------------------------------------------------------------------

void ExpectInvalid(const SamplingParams& p, const std::string& field, const std::string& value) {
  const Status st = p.Validate(1000);
  ASSERT_FALSE(st.ok()) << field << " " << value;
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(field), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("got " + value), std::string::npos) << st.message();
}

TEST(SamplingParamsTest, DefaultsAndEdgesAreValid) {
  EXPECT_TRUE(SamplingParams{}.Validate(1000).ok());
  SamplingParams p;
  p.temperature = 100.0f;
  p.top_k = 1000;
  p.top_p = 1.0f;
  p.min_p = 0.999f;
  p.repetition_penalty = 10.0f;
  p.frequency_penalty = -2.0f;
  p.presence_penalty = 2.0f;
  p.penalty_last_n = -1;
  p.logprobs = 20;
  EXPECT_TRUE(p.Validate(1000).ok());
}

TEST(SamplingParamsTest, EveryRangeIsChecked) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  auto with = [](auto setter) {
    SamplingParams p;
    setter(p);
    return p;
  };
  ExpectInvalid(with([](SamplingParams& p) { p.temperature = -0.1f; }), "temperature", "-0.1");
  ExpectInvalid(with([](SamplingParams& p) { p.temperature = 100.5f; }), "temperature", "100.5");
  ExpectInvalid(with([&](SamplingParams& p) { p.temperature = nan; }), "temperature", "nan");
  ExpectInvalid(with([&](SamplingParams& p) { p.temperature = inf; }), "temperature", "inf");
  ExpectInvalid(with([](SamplingParams& p) { p.top_k = -1; }), "top_k", "-1");
  ExpectInvalid(with([](SamplingParams& p) { p.top_k = 1001; }), "top_k", "1001");
  ExpectInvalid(with([](SamplingParams& p) { p.top_p = 0.0f; }), "top_p", "0");
  ExpectInvalid(with([](SamplingParams& p) { p.top_p = 1.5f; }), "top_p", "1.5");
  ExpectInvalid(with([&](SamplingParams& p) { p.top_p = nan; }), "top_p", "nan");
  ExpectInvalid(with([](SamplingParams& p) { p.min_p = -0.5f; }), "min_p", "-0.5");
  ExpectInvalid(with([](SamplingParams& p) { p.min_p = 1.0f; }), "min_p", "1");
  ExpectInvalid(with([&](SamplingParams& p) { p.min_p = nan; }), "min_p", "nan");
  ExpectInvalid(with([](SamplingParams& p) { p.repetition_penalty = 0.0f; }), "repetition_penalty", "0");
  ExpectInvalid(with([](SamplingParams& p) { p.repetition_penalty = 11.0f; }), "repetition_penalty", "11");
  ExpectInvalid(with([&](SamplingParams& p) { p.repetition_penalty = inf; }), "repetition_penalty", "inf");
  ExpectInvalid(with([](SamplingParams& p) { p.frequency_penalty = -2.5f; }), "frequency_penalty", "-2.5");
  ExpectInvalid(with([](SamplingParams& p) { p.frequency_penalty = 3.0f; }), "frequency_penalty", "3");
  ExpectInvalid(with([&](SamplingParams& p) { p.frequency_penalty = nan; }), "frequency_penalty", "nan");
  ExpectInvalid(with([](SamplingParams& p) { p.presence_penalty = -2.25f; }), "presence_penalty", "-2.25");
  ExpectInvalid(with([&](SamplingParams& p) { p.presence_penalty = -inf; }), "presence_penalty", "-inf");
  ExpectInvalid(with([](SamplingParams& p) { p.penalty_last_n = -2; }), "penalty_last_n", "-2");
  ExpectInvalid(with([](SamplingParams& p) { p.logprobs = -1; }), "logprobs", "-1");
  ExpectInvalid(with([](SamplingParams& p) { p.logprobs = 21; }), "logprobs", "21");
}

TEST(SamplingParamsTest, MessageIsReadable) {
  SamplingParams p;
  p.top_p = 1.5f;
  EXPECT_EQ(p.Validate(1000).message(), "top_p must be in (0, 1], got 1.5");
  EXPECT_FALSE(SamplingParams{}.Validate(0).ok());
}

}  // namespace
}  // namespace slim
