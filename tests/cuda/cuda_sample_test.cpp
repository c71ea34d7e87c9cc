// The CUDA logits summary (sample_topk.cu) against the CPU backend's (the host reference) on
// random rows with heavy ties, -0, NaN and infinities: vocab 49152 and 128256, 1..8 rows,
// k in {1, 20, 64, 256}, penalties; samplers fed GPU summaries against Sample on the full row
// over many seeds; and the engine's sampling path on synthetic:smollm2-135m. Skipped where no
// CUDA device is present.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/engine.h"
#include "tests/engine/sampling_check.h"

namespace slim {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

struct Backends {
  std::unique_ptr<Backend> gpu, cpu;
};

Backends* GetBackends() {
  static Backends* b = [] {
    auto* out = new Backends();
    BackendOptions g;
    g.device = Device::kCuda;
    if (auto r = CreateBackend(g); r.ok()) out->gpu = std::move(*r);
    BackendOptions c;
    c.threads = 2;
    out->cpu = std::move(*CreateBackend(c));
    return out;
  }();
  return b;
}

bool HaveGpu() { return GetBackends()->gpu != nullptr; }

// A 1/4 grid (thousands of ties per value at these sizes), -0 and +0, NaN, -inf; +inf when asked.
std::vector<float> Row(size_t vocab, uint32_t seed, bool pos_inf) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(vocab);
  for (float& x : v) x = std::round(dist(rng) * 4.0f) / 4.0f;
  for (int i = 0; i < 64; ++i) v[rng() % vocab] = -0.0f;
  for (int i = 0; i < 16; ++i) v[rng() % vocab] = std::numeric_limits<float>::quiet_NaN();
  for (int i = 0; i < 16; ++i) v[rng() % vocab] = -kInf;
  if (pos_inf) v[rng() % vocab] = kInf;
  return v;
}

// Both backends summarize the same rows; the GPU's rows must be unchanged afterwards.
void CompareSummaries(const std::vector<float>& host, int64_t n, int64_t vocab, const std::vector<SummaryRequest>& reqs,
                      std::vector<LogitsSummary>* gpu_out = nullptr) {
  Backends* b = GetBackends();
  std::vector<LogitsSummary> sums[2];
  Backend* be[2] = {b->gpu.get(), b->cpu.get()};
  std::vector<float> after(host.size());
  for (int i = 0; i < 2; ++i) {
    auto buf = be[i]->Alloc(DType::kF32, n, vocab);
    ASSERT_TRUE(buf.ok()) << buf.status().ToString();
    ASSERT_TRUE(be[i]->Upload(host.data(), buf->view()).ok());
    const Status st = be[i]->SummarizeLogits(buf->view(), reqs, &sums[i]);
    ASSERT_TRUE(st.ok()) << st.ToString();
    if (i == 0) {
      ASSERT_TRUE(be[i]->Download(buf->view(), after.data()).ok());
    }
  }
  for (size_t j = 0; j < host.size(); ++j) {
    ASSERT_TRUE(std::isnan(host[j]) ? std::isnan(after[j]) : std::signbit(after[j]) == std::signbit(host[j]) &&
                                                                 after[j] == host[j])
        << "logit " << j << " changed";
  }
  for (int64_t r = 0; r < n; ++r) {
    const LogitsSummary& g = sums[0][static_cast<size_t>(r)];
    const LogitsSummary& c = sums[1][static_cast<size_t>(r)];
    const std::string what = "row " + std::to_string(r) + " k " + std::to_string(reqs[static_cast<size_t>(r)].k);
    ASSERT_EQ(g.top.size(), c.top.size()) << what;
    if (c.top.empty()) continue;
    EXPECT_EQ(g.max_logit, c.max_logit) << what;
    // An overflowed row is never sampled from its summary (logits_summary.h); its entries differ
    // only in +inf vs FLT_MAX.
    if (c.max_logit == kInf) continue;
    if (std::isfinite(c.max_logit)) {
      EXPECT_NEAR(g.z / c.z, 1.0, 1e-5) << what;
    }
    for (size_t i = 0; i < c.top.size(); ++i) {
      EXPECT_EQ(g.top[i].id, c.top[i].id) << what << " top " << i;
      EXPECT_EQ(g.top[i].logit, c.top[i].logit) << what << " top " << i;  // -0 == +0
    }
  }
  if (gpu_out) *gpu_out = std::move(sums[0]);
}

TEST(CudaSample, SummaryMatchesCpu) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  for (int64_t vocab : {49152, 128256}) {
    for (int64_t n : {1, 3, 8}) {
      for (int32_t k : {1, 20, 64, 256}) {
        std::vector<float> host;
        std::vector<SummaryRequest> reqs(static_cast<size_t>(n));
        for (int64_t r = 0; r < n; ++r) {
          const auto row = Row(static_cast<size_t>(vocab), static_cast<uint32_t>(vocab + 97 * n + 13 * k + r), r == 1);
          host.insert(host.end(), row.begin(), row.end());
          SummaryRequest& q = reqs[static_cast<size_t>(r)];
          q.k = r == 2 ? 0 : (r % 2 == 0 ? k : std::max(1, k / 2));  // mixed k, one skipped row
          q.inv_t = r % 3 == 0 ? 1.0f : 1.0f / 0.7f;
          if (r % 2 == 0) {
            q.repetition_penalty = 1.3f;
            q.frequency_penalty = 0.4f;
            q.presence_penalty = 0.25f;
            std::mt19937 rng(static_cast<uint32_t>(r + k));
            std::vector<bool> used(static_cast<size_t>(vocab));
            for (int i = 0; i < 300; ++i) {
              const int32_t id = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
              if (used[static_cast<size_t>(id)]) continue;
              used[static_cast<size_t>(id)] = true;
              q.penalties.push_back({id, 1 + static_cast<int32_t>(rng() % 5)});
            }
          }
        }
        SCOPED_TRACE("vocab " + std::to_string(vocab) + " rows " + std::to_string(n) + " k " + std::to_string(k));
        CompareSummaries(host, n, vocab, reqs);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

TEST(CudaSample, MaskedRowsAndOverflowingPenalties) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  const int64_t vocab = 49152;
  std::vector<float> host(2 * static_cast<size_t>(vocab), -kInf);  // row 0: all masked
  for (int64_t i = 0; i < vocab; ++i) host[static_cast<size_t>(vocab + i)] = static_cast<float>(i % 17) * 0.5f;
  host[static_cast<size_t>(vocab + 123)] = 3.0e38f;  // row 1: / 0.5 overflows to +inf
  std::vector<SummaryRequest> reqs(2);
  reqs[0].k = 20;
  reqs[1].k = 20;
  reqs[1].repetition_penalty = 0.5f;
  reqs[1].penalties = {{123, 1}, {5, 2}};
  std::vector<LogitsSummary> gpu;
  CompareSummaries(host, 2, vocab, reqs, &gpu);
  EXPECT_EQ(gpu[0].max_logit, -kInf);
  EXPECT_EQ(gpu[1].max_logit, kInf);
}

// Samplers fed GPU summaries against Sample on the host row, over many seeds and params.
TEST(CudaSample, SamplingFromGpuSummariesIsExact) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  Backend* gpu = GetBackends()->gpu.get();
  const int32_t vocab = 49152;
  auto buf = gpu->Alloc(DType::kF32, 1, vocab);
  ASSERT_TRUE(buf.ok());
  int decided = 0, steps = 0;
  for (int config = 0; config < 6; ++config) {
    SamplingParams p;
    p.temperature = config == 0 ? 0.0f : 0.5f + 0.2f * static_cast<float>(config);
    p.top_k = config == 0 ? 0 : (config == 5 ? 256 : 10 * config);
    p.top_p = config == 3 ? 0.7f : 1.0f;
    p.min_p = config == 4 ? 0.02f : 0.0f;
    p.logprobs = config % 2 == 0 ? 5 : 0;
    p.repetition_penalty = config >= 2 ? 1.2f : 1.0f;
    p.frequency_penalty = config >= 2 ? 0.3f : 0.0f;
    for (uint64_t seed = 0; seed < 40; ++seed) {
      p.seed = seed;
      Sampler full(p, vocab), fast(p, vocab);
      std::vector<int32_t> history;
      for (int i = 0; i < 20; ++i) history.push_back(static_cast<int32_t>((seed * 31 + static_cast<uint64_t>(i) * 7) % 500));
      for (int step = 0; step < 3; ++step) {
        auto row = Row(static_cast<size_t>(vocab), static_cast<uint32_t>(seed * 10 + static_cast<uint64_t>(step) + 1000 * config), false);
        for (int32_t t : history) row[static_cast<size_t>(t)] = 8.0f + static_cast<float>(t % 4) * 0.25f;
        ASSERT_TRUE(gpu->Upload(row.data(), buf->view()).ok());
        const SampleResult want = full.Sample(row, history);
        const std::optional<SummaryRequest> req = fast.SummaryRequestFor(history);
        ASSERT_TRUE(req.has_value());
        std::vector<LogitsSummary> s;
        ASSERT_TRUE(gpu->SummarizeLogits(buf->view(), std::span<const SummaryRequest>(&*req, 1), &s).ok());
        const std::optional<SampleResult> got = fast.SampleFromSummary(s[0]);
        ++steps;
        ASSERT_TRUE(got.has_value()) << "config " << config << " seed " << seed;
        ++decided;
        EXPECT_EQ(got->token, want.token) << "config " << config << " seed " << seed << " step " << step;
        EXPECT_NEAR(got->logprob, want.logprob, 1e-5);
        ASSERT_EQ(got->top.size(), want.top.size());
        for (size_t i = 0; i < want.top.size(); ++i) {
          EXPECT_EQ(got->top[i].id, want.top[i].id);
          EXPECT_NEAR(got->top[i].logprob, want.top[i].logprob, 1e-5);
        }
        history.push_back(want.token);
      }
    }
  }
  EXPECT_EQ(decided, steps);
}

TEST(CudaSample, EngineSamplingMatchesFullRows) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  EngineOptions o;
  o.model = "synthetic:smollm2-135m";
  o.backend.device = Device::kCuda;
  o.kv_tokens = 4096;
  auto e = Engine::Create(o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  testing::BatchAgreesWithFullRows(**e, 16);
  testing::GenerateAgreesWithFullRows(**e, 32);
}

}  // namespace
}  // namespace slim
