// Sampling in the engine: the CPU backend's SummarizeLogits against a direct host computation
// (penalties, max, z in long double, full sort), with the rows left unchanged; and
// PrefillAndSample / DecodeAndSample / Generate (the summary path) against Prefill / Decode +
// Sampler::Sample on the full logits, token for token (tests/engine/sampling_check.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/engine.h"
#include "tests/engine/sampling_check.h"

namespace slim {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> TiedRow(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(n);
  for (float& x : v) x = std::round(dist(rng) * 2.0f) / 2.0f;
  for (int i = 0; i < 5; ++i) v[rng() % n] = std::numeric_limits<float>::quiet_NaN();
  for (int i = 0; i < 5; ++i) v[rng() % n] = -kInf;
  return v;
}

// The summary as its definition reads, computed the slow way.
LogitsSummary Direct(std::vector<float> row, const SummaryRequest& req) {
  for (float& l : row) l = std::isnan(l) ? -kInf : std::min(l, std::numeric_limits<float>::max());
  for (const PenaltyCount& p : req.penalties) {
    float& l = row[static_cast<size_t>(p.id)];
    const float sub = std::fma(static_cast<float>(p.count), req.frequency_penalty, req.presence_penalty);
    l = l <= 0.0f ? std::fma(l, req.repetition_penalty, -sub) : l / req.repetition_penalty - sub;
  }
  LogitsSummary s;
  s.max_logit = *std::max_element(row.begin(), row.end());
  long double z = 0;
  for (float l : row) z += std::exp(static_cast<long double>(l - s.max_logit) * req.inv_t);
  s.z = static_cast<double>(z);
  std::vector<int32_t> ids(row.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
  for (int i = 0; i < req.k; ++i) s.top.push_back({ids[static_cast<size_t>(i)], row[ids[static_cast<size_t>(i)]]});
  return s;
}

TEST(SummarizeLogitsTest, CpuBackendMatchesDirectComputation) {
  BackendOptions o;
  o.threads = 2;
  auto be = CreateBackend(o);
  ASSERT_TRUE(be.ok()) << be.status().ToString();
  const int64_t vocab = 5003, n = 5;
  auto buf = (*be)->Alloc(DType::kF32, n, vocab);
  ASSERT_TRUE(buf.ok());
  std::vector<float> host;
  for (int64_t r = 0; r < n; ++r) {
    const auto row = TiedRow(static_cast<size_t>(vocab), 100 + static_cast<uint32_t>(r));
    host.insert(host.end(), row.begin(), row.end());
  }
  ASSERT_TRUE((*be)->Upload(host.data(), buf->view()).ok());
  std::vector<SummaryRequest> reqs(static_cast<size_t>(n));
  const int ks[] = {1, 20, 64, 0, 256};
  for (int64_t r = 0; r < n; ++r) {
    SummaryRequest& q = reqs[static_cast<size_t>(r)];
    q.k = ks[r];
    q.inv_t = r == 1 ? 1.0f / 0.7f : 1.0f;
    if (r % 2 == 0) {
      q.repetition_penalty = 1.4f;
      q.frequency_penalty = 0.25f;
      q.presence_penalty = -0.5f;
      q.penalties = {{3, 1}, {17, 4}, {4000, 2}, {static_cast<int32_t>(vocab - 1), 1}};
    }
  }
  std::vector<LogitsSummary> got;
  ASSERT_TRUE((*be)->SummarizeLogits(buf->view(), reqs, &got).ok());
  ASSERT_EQ(got.size(), static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    const SummaryRequest& q = reqs[static_cast<size_t>(r)];
    const LogitsSummary& g = got[static_cast<size_t>(r)];
    if (q.k == 0) {
      EXPECT_TRUE(g.top.empty());
      continue;
    }
    const LogitsSummary want =
        Direct(std::vector<float>(host.begin() + r * vocab, host.begin() + (r + 1) * vocab), q);
    EXPECT_EQ(g.max_logit, want.max_logit) << r;
    EXPECT_NEAR(g.z / want.z, 1.0, 1e-5) << r;  // the Sampler's float lane sums
    ASSERT_EQ(g.top.size(), want.top.size()) << r;
    for (size_t i = 0; i < want.top.size(); ++i) {
      EXPECT_EQ(g.top[i].id, want.top[i].id) << r << " " << i;
      EXPECT_EQ(g.top[i].logit, want.top[i].logit) << r << " " << i;
    }
  }
  // The logits are left as they were.
  std::vector<float> after(host.size());
  ASSERT_TRUE((*be)->Download(buf->view(), after.data()).ok());
  for (size_t i = 0; i < host.size(); ++i) {
    if (std::isnan(host[i])) {
      EXPECT_TRUE(std::isnan(after[i])) << i;
    } else {
      EXPECT_EQ(after[i], host[i]) << i;
    }
  }
  // Bad requests are refused.
  reqs[0].penalties.push_back(reqs[0].penalties[0]);
  EXPECT_EQ((*be)->SummarizeLogits(buf->view(), reqs, &got).code(), StatusCode::kInvalidArgument);
  reqs.pop_back();
  EXPECT_EQ((*be)->SummarizeLogits(buf->view(), reqs, &got).code(), StatusCode::kInvalidArgument);
}

TEST(EngineSamplingTest, SummaryPathMatchesFullRowsOnTinyModel) {
  auto e = testing::TinyEngine();
  ASSERT_NE(e, nullptr);
  testing::BatchAgreesWithFullRows(*e, 12);
  testing::GenerateAgreesWithFullRows(*e, 10);
}

TEST(EngineSamplingTest, SummaryPathMatchesFullRowsOnDefaultModel) {
  if (!std::filesystem::exists(SLIM_DEFAULT_MODEL)) GTEST_SKIP() << SLIM_DEFAULT_MODEL << " not present";
  EngineOptions o;
  o.model = SLIM_DEFAULT_MODEL;
  o.kv_tokens = 2048;
  o.backend.threads = 2;
  auto e = Engine::Create(o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  testing::BatchAgreesWithFullRows(**e, 6);
}

}  // namespace
}  // namespace slim
