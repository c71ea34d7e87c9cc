// Engine::Step: chunked prefill (dense and pruned) against one whole prefill of the same prompt,
// the budget's order and accounting, and batched prefills mixed with decodes against one
// sequence at a time, on synthetic weights (the CPU backend).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "engine/engine.h"
#include "tests/engine/engine_test_util.h"

namespace slim {
namespace {

using testing::RandomIds;
using testing::TinyEngine;

double MaxDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0.0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::fabs(double{a[i]} - b[i]));
  return m;
}

StepItem PrefillItem(kv::SeqId seq, const std::vector<int32_t>& prompt, const PruningRequest* pruning = nullptr,
                     Sampler* sampler = nullptr) {
  StepItem it;
  it.kind = StepItem::Kind::kPrefill;
  it.seq = seq;
  it.tokens = prompt;
  it.pruning = pruning;
  if (sampler) it.sample = SampleSpec{sampler, prompt};
  return it;
}

// Prefills `prompt` as sequence `seq` in steps of `budget`; returns the last step's output and
// the number of steps taken. `bounded`: each step must keep to the budget.
StepOutput ChunkedPrefill(Engine& e, kv::SeqId seq, const std::vector<int32_t>& prompt, int64_t budget,
                          const PruningRequest* pruning, int* steps, bool bounded = true) {
  const StepItem item = PrefillItem(seq, prompt, pruning);
  std::vector<StepOutput> out;
  *steps = 0;
  int64_t work = 0;
  const int64_t total = *e.PrefillWork(static_cast<int64_t>(prompt.size()), pruning ? *pruning : PruningRequest{});
  for (;;) {
    EXPECT_TRUE(e.Step(std::span<const StepItem>(&item, 1), budget, &out).ok());
    EXPECT_TRUE(out[0].status.ok()) << out[0].status.ToString();
    ++*steps;
    if (bounded) EXPECT_LE(out[0].work, budget + 1) << "a step ran more than its budget (one row of rounding aside)";
    work += out[0].work;
    if (out[0].done || !out[0].status.ok() || *steps > 10000) break;
    EXPECT_EQ(e.PrefillWorkLeft(seq), total - work);
  }
  EXPECT_NEAR(static_cast<double>(work), static_cast<double>(total), 3.0);
  return out[0];
}

std::vector<float> DecodeLogits(Engine& e, kv::SeqId seq, int32_t token) {
  std::vector<float> lg;
  DecodeItem it{seq, token};
  EXPECT_TRUE(e.Decode({&it, 1}, &lg).ok());
  return lg;
}

TEST(ChunkedPrefill, DenseChunksMatchOneWholePass) {
  auto e = TinyEngine();
  const auto ids = RandomIds(600, e->config().vocab_size, 5);
  auto whole = e->Prefill(1, ids);
  ASSERT_TRUE(whole.ok());
  const std::vector<float> whole_next = DecodeLogits(*e, 1, 42);
  kv::SeqId seq = 2;
  for (int64_t budget : {1, 63, 64, 100, 599}) {
    int steps = 0;
    const StepOutput o = ChunkedPrefill(*e, seq, ids, budget, nullptr, &steps);
    ASSERT_TRUE(o.done);
    EXPECT_EQ(steps, (600 + budget - 1) / budget) << "budget " << budget;
    EXPECT_EQ(o.prefill.prompt_tokens, 600);
    EXPECT_FALSE(o.prefill.pruning.applied);
    EXPECT_LT(MaxDiff(o.logits, whole->logits), 1e-4) << "budget " << budget;
    for (int l = 0; l < e->config().n_layers; ++l) EXPECT_EQ(e->kv().Tokens(seq, l), 600);
    EXPECT_EQ(e->SequenceLength(seq), 600);
    EXPECT_LT(MaxDiff(DecodeLogits(*e, seq, 42), whole_next), 1e-4) << "budget " << budget;
    ASSERT_TRUE(e->Release(seq).ok());
    ++seq;
  }
}

TEST(ChunkedPrefill, PrunedChunksKeepWhatTheWholePassKeeps) {
  auto e = TinyEngine();
  const auto ids = RandomIds(600, e->config().vocab_size, 21);
  PruningRequest req;
  req.mode = PruningMode::kExplicit;
  req.config.stages = {{1, 320, false}, {2, 192, false}};  // 600 -> 280 -> 152 tokens
  auto whole = e->Prefill(1, ids, req);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  ASSERT_EQ(whole->pruning.stages.size(), 2u);
  const std::vector<float> whole_next = DecodeLogits(*e, 1, 42);
  // (600 + 280 + 152) / 3 layers = 344 tokens of work.
  EXPECT_EQ(*e->PrefillWork(600, req), 344);
  kv::SeqId seq = 2;
  for (int64_t budget : {1, 7, 50, 150, 343}) {
    int steps = 0;
    const StepOutput o = ChunkedPrefill(*e, seq, ids, budget, &req, &steps);
    ASSERT_TRUE(o.done);
    EXPECT_GE(steps, 344 / budget) << "budget " << budget;
    EXPECT_TRUE(o.prefill.pruning.applied);
    ASSERT_EQ(o.prefill.pruning.stages.size(), 2u);
    for (size_t s = 0; s < 2; ++s) {
      EXPECT_EQ(o.prefill.pruning.stages[s].layer, whole->pruning.stages[s].layer);
      EXPECT_EQ(o.prefill.pruning.stages[s].tokens_kept, whole->pruning.stages[s].tokens_kept);
    }
    EXPECT_EQ(o.prefill.kv_bytes, whole->kv_bytes);
    for (int l = 0; l < e->config().n_layers; ++l) EXPECT_EQ(e->kv().Tokens(seq, l), e->kv().Tokens(1, l) - 1);
    EXPECT_LT(MaxDiff(o.logits, whole->logits), 1e-4) << "budget " << budget;
    EXPECT_LT(MaxDiff(DecodeLogits(*e, seq, 42), whole_next), 1e-4) << "budget " << budget;
    ASSERT_TRUE(e->Release(seq).ok());
    ++seq;
  }
}

TEST(ChunkedPrefill, StagesAfterAttentionRunWholeWhateverTheBudget) {
  auto e = TinyEngine();
  const auto ids = RandomIds(600, e->config().vocab_size, 21);
  PruningRequest req;
  req.mode = PruningMode::kExplicit;
  req.config.stages = {{1, 320, false}};
  req.config.after_attention = true;
  int steps = 0;
  const StepOutput o = ChunkedPrefill(*e, 1, ids, 10, &req, &steps, /*bounded=*/false);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(steps, 1);
  EXPECT_TRUE(o.prefill.pruning.applied);
}

TEST(EngineStep, TheBudgetRunsPrefillsInOrderAndLaterOnesWait) {
  auto e = TinyEngine();
  const int vocab = e->config().vocab_size;
  const auto a = RandomIds(60, vocab, 1), b = RandomIds(80, vocab, 2), c = RandomIds(30, vocab, 3);
  const StepItem items[] = {PrefillItem(1, a), PrefillItem(2, b), PrefillItem(3, c)};
  std::vector<StepOutput> out;
  ASSERT_TRUE(e->Step(items, 100, &out).ok());
  EXPECT_TRUE(out[0].done);
  EXPECT_EQ(out[0].work, 60);
  EXPECT_FALSE(out[1].done);
  EXPECT_EQ(out[1].work, 40);
  EXPECT_EQ(e->PrefillWorkLeft(2), 40);
  EXPECT_FALSE(out[2].done);
  EXPECT_EQ(out[2].work, 0);
  EXPECT_FALSE(e->kv().HasSequence(3)) << "a prefill the budget did not reach must not be started";
  // A partly prefilled sequence cannot decode yet.
  DecodeItem d{2, 5};
  std::vector<float> lg;
  EXPECT_EQ(e->Decode({&d, 1}, &lg).code(), StatusCode::kNotFound);
  const StepItem rest[] = {PrefillItem(2, b), PrefillItem(3, c)};
  ASSERT_TRUE(e->Step(rest, 100, &out).ok());
  EXPECT_TRUE(out[0].done);
  EXPECT_EQ(out[0].work, 40);
  EXPECT_TRUE(out[1].done);
  EXPECT_EQ(out[1].work, 30);
  for (kv::SeqId s : {1, 2, 3}) ASSERT_TRUE(e->Release(s).ok());
  EXPECT_EQ(e->kv().FreeBlocks(), e->kv().TotalBlocks());
}

TEST(EngineStep, ReleaseDuringAChunkedPrefillFreesItsBlocks) {
  auto e = TinyEngine();
  const auto ids = RandomIds(600, e->config().vocab_size, 21);
  PruningRequest req;
  req.mode = PruningMode::kExplicit;
  req.config.stages = {{1, 320, false}, {2, 192, false}};
  for (const PruningRequest* p : std::vector<const PruningRequest*>{nullptr, &req}) {
    const StepItem item = PrefillItem(7, ids, p);
    std::vector<StepOutput> out;
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(e->Step(std::span<const StepItem>(&item, 1), 100, &out).ok());
    ASSERT_TRUE(out[0].status.ok());
    ASSERT_FALSE(out[0].done);
    EXPECT_GT(e->PrefillWorkLeft(7), 0);
    ASSERT_TRUE(e->Release(7).ok());
    EXPECT_EQ(e->PrefillWorkLeft(7), 0);
    EXPECT_EQ(e->kv().FreeBlocks(), e->kv().TotalBlocks());
    EXPECT_FALSE(e->kv().HasSequence(7));
  }
}

TEST(EngineStep, BadItemsFailAloneAndTheOthersGoOn) {
  auto e = TinyEngine();
  const auto ids = RandomIds(50, e->config().vocab_size, 1);
  const std::vector<int32_t> empty;
  const std::vector<int32_t> too_long(static_cast<size_t>(e->context_length() + 1), 1);
  const StepItem items[] = {PrefillItem(1, empty), PrefillItem(2, ids), PrefillItem(3, too_long)};
  std::vector<StepOutput> out;
  ASSERT_TRUE(e->Step(items, 0, &out).ok());
  EXPECT_EQ(out[0].status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(out[1].status.ok());
  EXPECT_TRUE(out[1].done);
  EXPECT_EQ(out[2].status.code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(e->kv().HasSequence(1));
  EXPECT_FALSE(e->kv().HasSequence(3));
  const StepItem twice[] = {PrefillItem(4, ids), PrefillItem(4, ids)};
  EXPECT_EQ(e->Step(twice, 0, &out).code(), StatusCode::kInvalidArgument);
}

// Greedy tokens of each prompt generated alone (Engine::Generate).
std::vector<int32_t> GenerateAlone(Engine& e, const std::vector<int32_t>& prompt, int n,
                                   const PruningRequest& pruning) {
  StopParams stop;
  stop.max_tokens = n;
  stop.ignore_eos = true;
  auto r = e.Generate(prompt, SamplingParams{}, stop, nullptr, 100, pruning);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r->token_ids : std::vector<int32_t>{};
}

TEST(EngineStep, BatchedPrefillsAndDecodesGiveTheTokensOfOneAtATime) {
  auto e = TinyEngine(16384);
  const int vocab = e->config().vocab_size;
  PruningRequest pruned;
  pruned.mode = PruningMode::kExplicit;
  pruned.config.stages = {{1, 320, false}, {2, 192, false}};
  const PruningRequest dense;
  struct Seq {
    std::vector<int32_t> prompt;
    const PruningRequest* pruning;
    std::vector<int32_t> alone, batched;
    std::optional<Sampler> sampler;
    std::vector<int32_t> history;
  };
  std::vector<Seq> seqs(4);
  seqs[0].prompt = RandomIds(700, vocab, 31);
  seqs[0].pruning = &pruned;
  seqs[1].prompt = RandomIds(90, vocab, 32);
  seqs[1].pruning = &dense;
  seqs[2].prompt = RandomIds(650, vocab, 33);
  seqs[2].pruning = &pruned;
  seqs[3].prompt = RandomIds(5, vocab, 34);
  seqs[3].pruning = &dense;
  constexpr int kTokens = 12;
  for (Seq& s : seqs) {
    s.alone = GenerateAlone(*e, s.prompt, kTokens, *s.pruning);
    s.sampler.emplace(SamplingParams{}, vocab);
    s.history = s.prompt;
  }
  // Sequences 0 and 1 start together; 2 and 3 arrive while they decode. A budget of 120 makes
  // the pruned prompts run in chunks beside the others' decodes.
  std::map<size_t, bool> prefilled;
  for (int step = 0; step < 200; ++step) {
    std::vector<StepItem> items;
    std::vector<size_t> who;
    for (size_t i = 0; i < seqs.size(); ++i) {
      Seq& s = seqs[i];
      if (i >= 2 && step < 3) continue;
      if (static_cast<int>(s.batched.size()) >= kTokens) continue;
      StepItem it;
      it.seq = static_cast<kv::SeqId>(i + 1);
      it.sample = SampleSpec{&*s.sampler, s.history};
      if (!prefilled[i]) {
        it.kind = StepItem::Kind::kPrefill;
        it.tokens = s.prompt;
        it.pruning = s.pruning;
      } else {
        it.tokens = std::span<const int32_t>(&s.batched.back(), 1);
      }
      items.push_back(it);
      who.push_back(i);
    }
    if (items.empty()) break;
    std::vector<StepOutput> out;
    ASSERT_TRUE(e->Step(items, 120, &out).ok());
    for (size_t j = 0; j < items.size(); ++j) {
      ASSERT_TRUE(out[j].status.ok()) << out[j].status.ToString();
      if (!out[j].done) continue;
      Seq& s = seqs[who[j]];
      prefilled[who[j]] = true;
      s.batched.push_back(out[j].sampled.token);
      s.history.push_back(out[j].sampled.token);
    }
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    EXPECT_EQ(seqs[i].batched, seqs[i].alone) << "sequence " << i;
    ASSERT_TRUE(e->Release(static_cast<kv::SeqId>(i + 1)).ok());
  }
}

}  // namespace
}  // namespace slim
