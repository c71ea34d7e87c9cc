// The layer loop on synthetic weights against a plain single-sequence reference written here:
// prefill then decode equals a longer prefill; a batch of sequences of different lengths
// decodes exactly like each sequence alone; KV counts and release.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "engine/engine.h"
#include "tests/engine/engine_test_util.h"

namespace slim {
namespace {

using testing::RandomIds;
using testing::TinyEngine;

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b, size_t off_a = 0, size_t off_b = 0,
                 size_t n = 0) {
  if (n == 0) n = a.size();
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[off_a + i] - b[off_b + i]));
  return m;
}

TEST(Model, PrefillThenDecodeMatchesLongerPrefill) {
  auto e = TinyEngine();
  const int vocab = e->config().vocab_size;
  // 150 tokens: crosses two block boundaries; the GEMM attention path (>= 16 rows).
  std::vector<int32_t> ids = RandomIds(150, vocab, 7);
  std::vector<int32_t> prefix(ids.begin(), ids.end() - 3);
  auto full = e->Prefill(1, ids);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  auto part = e->Prefill(2, prefix);
  ASSERT_TRUE(part.ok());
  std::vector<float> logits;
  for (size_t i = prefix.size(); i < ids.size(); ++i) {
    DecodeItem it{2, ids[i]};
    ASSERT_TRUE(e->Decode({&it, 1}, &logits).ok());
  }
  EXPECT_LT(MaxAbsDiff(full->logits, logits), 1e-4f);
  EXPECT_EQ(e->SequenceLength(2), 150);
  EXPECT_EQ(e->SequenceKvBytes(1), e->SequenceKvBytes(2));
  EXPECT_EQ(e->SequenceKvBytes(1), size_t{150} * e->config().n_layers * e->kv().layout().TokenBytes());
}

TEST(Model, ShortPromptUsesRowPathAndAgrees) {
  auto e = TinyEngine();
  std::vector<int32_t> ids = RandomIds(10, e->config().vocab_size, 3);  // < 16 rows: decode kernel
  auto a = e->Prefill(1, ids);
  ASSERT_TRUE(a.ok());
  std::vector<int32_t> first(ids.begin(), ids.begin() + 1);
  ASSERT_TRUE(e->Prefill(2, first).ok());
  std::vector<float> logits;
  for (size_t i = 1; i < ids.size(); ++i) {
    DecodeItem it{2, ids[i]};
    ASSERT_TRUE(e->Decode({&it, 1}, &logits).ok());
  }
  EXPECT_LT(MaxAbsDiff(a->logits, logits), 1e-4f);
}

TEST(Model, BatchedDecodeEqualsSingleSequences) {
  auto batched = TinyEngine();
  auto single = TinyEngine();
  const int vocab = batched->config().vocab_size;
  const std::vector<int> lengths = {5, 64, 130, 17};
  for (size_t s = 0; s < lengths.size(); ++s) {
    auto ids = RandomIds(lengths[s], vocab, static_cast<uint32_t>(100 + s));
    ASSERT_TRUE(batched->Prefill(static_cast<int64_t>(s), ids).ok());
    ASSERT_TRUE(single->Prefill(static_cast<int64_t>(s), ids).ok());
  }
  std::mt19937 rng(9);
  for (int step = 0; step < 5; ++step) {
    std::vector<DecodeItem> items;
    for (size_t s = 0; s < lengths.size(); ++s)
      items.push_back({static_cast<int64_t>(s), static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab))});
    std::vector<float> blog;
    ASSERT_TRUE(batched->Decode(items, &blog).ok());
    for (size_t s = 0; s < items.size(); ++s) {
      std::vector<float> slog;
      ASSERT_TRUE(single->Decode({&items[s], 1}, &slog).ok());
      EXPECT_LT(MaxAbsDiff(blog, slog, s * static_cast<size_t>(vocab), 0, static_cast<size_t>(vocab)), 1e-5f)
          << "sequence " << s << " step " << step;
    }
  }
}

TEST(Model, KvBlocksReturnOnRelease) {
  auto e = TinyEngine(1024);
  const int64_t free0 = e->kv().FreeBlocks();
  auto ids = RandomIds(200, e->config().vocab_size, 1);
  ASSERT_TRUE(e->Prefill(5, ids).ok());
  EXPECT_EQ(free0 - e->kv().FreeBlocks(), 4 * e->config().n_layers);
  EXPECT_EQ(e->Prefill(5, ids).status().code(), StatusCode::kAlreadyExists);
  ASSERT_TRUE(e->Release(5).ok());
  EXPECT_EQ(e->kv().FreeBlocks(), free0);
  EXPECT_EQ(e->Release(5).code(), StatusCode::kNotFound);
}

TEST(Model, RejectsWhatCannotFit) {
  auto e = TinyEngine(256);  // 4 blocks per layer (+1 spare)
  auto ids = RandomIds(400, e->config().vocab_size, 2);
  const int64_t free0 = e->kv().FreeBlocks();
  EXPECT_EQ(e->Prefill(1, ids).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(e->kv().FreeBlocks(), free0);
  EXPECT_FALSE(e->kv().HasSequence(1));
  std::vector<int32_t> bad = {1, 2, 100000};
  EXPECT_EQ(e->Prefill(2, bad).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e->kv().FreeBlocks(), free0);
  EXPECT_EQ(e->Prefill(3, {}).status().code(), StatusCode::kInvalidArgument);
}

// The CPU backend tunes nothing: the warm-up is one short generation, and leaves the KV store as
// it found it (the CUDA bucket walk is tested in tests/cuda/cuda_model_test.cpp).
TEST(Model, WarmUpLeavesNothingBehind) {
  auto e = TinyEngine(512);
  ASSERT_EQ(e->backend()->TunedMinRows(), 0);
  const int64_t free0 = e->kv().FreeBlocks();
  ASSERT_TRUE(e->WarmUp(100000).ok());
  EXPECT_EQ(e->kv().FreeBlocks(), free0);
  EXPECT_FALSE(e->kv().HasSequence(0));
  auto g = e->Generate(RandomIds(40, e->config().vocab_size, 5), SamplingParams{}, StopParams{});
  EXPECT_TRUE(g.ok()) << g.status().ToString();
}

TEST(Model, GreedyGenerateIsDeterministic) {
  auto e = TinyEngine();
  auto ids = RandomIds(40, e->config().vocab_size, 4);
  SamplingParams sp;
  StopParams st;
  st.max_tokens = 12;
  auto a = e->Generate(ids, sp, st);
  auto b = e->Generate(ids, sp, st);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->token_ids, b->token_ids);
  EXPECT_EQ(a->token_ids.size(), 12u);
  EXPECT_EQ(a->finish, FinishReason::kLength);
}

}  // namespace
}  // namespace slim
