// The whole forward pass on the CUDA backend against the CPU backend: synthetic:smollm2-135m and
// synthetic:tiny (every row through the decode kernel), the real default and Qwen2 GGUF models
// when they are present, Hugging Face checkpoints, and the pruning invariants on the GPU.
// Skipped where no CUDA device is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "engine/engine.h"
#include "tests/cuda/cuda_test_util.h"

namespace slim {
namespace {

std::unique_ptr<Engine> MakeEngine(const std::string& model, Device device, int64_t kv_tokens) {
  EngineOptions o;
  o.model = model;
  o.backend.device = device;
  o.kv_tokens = kv_tokens;
  o.backend.threads = 2;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

struct Diff {
  double rel_l2 = 0.0;
  double max_abs = 0.0;
  bool top1_in_top5 = false;  // the CPU's argmax is among the GPU's five largest logits
};

Diff Compare(const std::vector<float>& gpu, const std::vector<float>& cpu) {
  Diff d;
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double e = double(gpu[i]) - cpu[i];
    if (!std::isfinite(gpu[i])) return Diff{INFINITY, INFINITY, false};
    num += e * e;
    den += double(cpu[i]) * cpu[i];
    d.max_abs = std::max(d.max_abs, std::fabs(e));
  }
  d.rel_l2 = std::sqrt(num / den);
  const size_t top = static_cast<size_t>(std::max_element(cpu.begin(), cpu.end()) - cpu.begin());
  std::vector<size_t> idx(gpu.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(), [&](size_t a, size_t b) { return gpu[a] > gpu[b]; });
  d.top1_in_top5 = std::find(idx.begin(), idx.begin() + 5, top) != idx.begin() + 5;
  return d;
}

// Prefill `n` random tokens and decode a few on both backends; logits compared at each step.
// bf16 weights and activations over tens of layers: a few percent relative L2 is expected.
void PrefillAndDecodeAgree(const std::string& model, int n, double tol) {
  auto gpu = MakeEngine(model, Device::kCuda, n + 64);
  auto cpu = MakeEngine(model, Device::kCpu, n + 64);
  ASSERT_TRUE(gpu && cpu);
  const int vocab = cpu->config().vocab_size;
  const auto ids = RandomIds(n, vocab, 5);
  auto pg = gpu->Prefill(1, ids);
  auto pc = cpu->Prefill(1, ids);
  ASSERT_TRUE(pg.ok()) << pg.status().ToString();
  ASSERT_TRUE(pc.ok()) << pc.status().ToString();
  EXPECT_EQ(pg->kv_bytes * 2, pc->kv_bytes);  // bf16 vs f32 blocks, same tokens
  std::vector<std::vector<float>> g = {pg->logits}, c = {pc->logits};
  for (int32_t t : {3, 1000 % vocab, 77, 5}) {
    DecodeItem it{1, t};
    std::vector<float> lg, lc;
    ASSERT_TRUE(gpu->Decode({&it, 1}, &lg).ok());
    ASSERT_TRUE(cpu->Decode({&it, 1}, &lc).ok());
    g.push_back(lg);
    c.push_back(lc);
  }
  for (size_t s = 0; s < g.size(); ++s) {
    const Diff d = Compare(g[s], c[s]);
    std::printf("%s n=%d step %zu: rel L2 %.3e, max |diff| %.3e, top1 in top5 %d\n", model.c_str(), n, s, d.rel_l2,
                d.max_abs, d.top1_in_top5);
    EXPECT_LT(d.rel_l2, tol) << model << " step " << s;
    EXPECT_TRUE(d.top1_in_top5) << model << " step " << s;
  }
}

TEST(CudaModel, Smollm2SyntheticMatchesCpu) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  PrefillAndDecodeAgree("synthetic:smollm2-135m", 300, 0.05);
}

TEST(CudaModel, TinySyntheticMatchesCpu) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  PrefillAndDecodeAgree("synthetic:tiny", 150, 0.05);
}

TEST(CudaModel, DefaultGgufModelMatchesCpu) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  if (!std::filesystem::exists(SLIM_DEFAULT_MODEL)) GTEST_SKIP() << SLIM_DEFAULT_MODEL << " not present";
  PrefillAndDecodeAgree(SLIM_DEFAULT_MODEL, 500, 0.05);
}

// Qwen2 (QKV biases, NeoX RoPE pairs reordered at load) where the files are present
// (scripts/fetch-model.sh qwen2.5-coder-0.5b / qwen2.5-coder-1.5b).
TEST(CudaModel, Qwen2GgufModelsMatchCpu) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  int ran = 0;
  for (const char* path : {SLIM_QWEN05_MODEL, SLIM_QWEN15_MODEL}) {
    if (!std::filesystem::exists(path)) continue;
    ++ran;
    PrefillAndDecodeAgree(path, 500, 0.05);
  }
  if (ran == 0) GTEST_SKIP() << "no Qwen2 model present";
}

// Hugging Face checkpoints (bf16/fp16/fp32 safetensors, no quantized copies): the tiny
// fixtures of scripts/make-hf-fixtures.py (the CPU matches transformers on them,
// tests/engine/hf_model_test.cpp) and the default model rebuilt by scripts/make-hf-smollm2.py.
TEST(CudaModel, HfCheckpointsMatchCpu) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  const std::filesystem::path hf = std::filesystem::path(SLIM_SOURCE_DIR) / "tests/fixtures/hf";
  for (const char* name : {"llama3_tied", "llama2_untied", "qwen2_tied", "mistral_window"}) {
    PrefillAndDecodeAgree((hf / name).string(), 150, 0.05);
  }
  if (std::filesystem::exists(SLIM_DEFAULT_HF_MODEL)) PrefillAndDecodeAgree(SLIM_DEFAULT_HF_MODEL, 500, 0.05);
}

TEST(CudaModel, BatchedDecodeEqualsSingleSequences) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  auto e = MakeEngine("synthetic:smollm2-135m", Device::kCuda, 4096);
  ASSERT_TRUE(e);
  const int vocab = e->config().vocab_size;
  const std::vector<int> lens = {5, 200, 70};
  for (size_t i = 0; i < lens.size(); ++i) {
    ASSERT_TRUE(e->Prefill(static_cast<kv::SeqId>(i), RandomIds(lens[i], vocab, 40 + i)).ok());
    ASSERT_TRUE(e->Prefill(static_cast<kv::SeqId>(10 + i), RandomIds(lens[i], vocab, 40 + i)).ok());
  }
  std::vector<DecodeItem> batch;
  for (size_t i = 0; i < lens.size(); ++i) batch.push_back({static_cast<kv::SeqId>(i), static_cast<int32_t>(9 + i)});
  std::vector<float> together;
  ASSERT_TRUE(e->Decode(batch, &together).ok());
  for (size_t i = 0; i < lens.size(); ++i) {
    DecodeItem it{static_cast<kv::SeqId>(10 + i), static_cast<int32_t>(9 + i)};
    std::vector<float> alone;
    ASSERT_TRUE(e->Decode({&it, 1}, &alone).ok());
    const std::vector<float> mine(together.begin() + static_cast<std::ptrdiff_t>(i * vocab),
                                  together.begin() + static_cast<std::ptrdiff_t>((i + 1) * vocab));
    // The same kernels on the same values; only cuBLAS may pick another algorithm for another
    // batch size.
    EXPECT_LT(Compare(mine, alone).rel_l2, 1e-2) << "sequence " << i;
  }
}

// A decode KV budget with a host tier moves the unchosen blocks off the gpu and fetches entering
// ones on the copy stream each step; attention reads the same blocks as with everything
// resident, so the logits are bit for bit those of the all-resident selection, while the gpu
// tier holds far fewer blocks.
TEST(CudaModel, TieredDecodeBudgetEqualsAllResident) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  auto run = [](int64_t host_tokens, std::vector<std::vector<float>>* logits, size_t* gpu_bytes,
                DecodeSelectionStats* stats) {
    EngineOptions o;
    o.model = "synthetic:smollm2-135m";
    o.backend.device = Device::kCuda;
    o.kv_tokens = 8192;
    o.host_kv_tokens = host_tokens;
    o.decode_kv_budget = 256;
    o.decode_kv_gamma = 0.9;
    auto e = Engine::Create(o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    const auto ids = RandomIds(3000, (*e)->config().vocab_size, 17);
    PruningRequest req;
    req.mode = PruningMode::kExplicit;
    req.config.stages = {{10, 1024, false}};
    auto pre = (*e)->Prefill(1, ids, req);
    ASSERT_TRUE(pre.ok()) << pre.status().ToString();
    logits->push_back(pre->logits);
    for (int k = 0; k < 24; ++k) {
      DecodeItem it{1, static_cast<int32_t>((k * 131 + 7) % (*e)->config().vocab_size)};
      std::vector<float> lg;
      const Status st = (*e)->Decode({&it, 1}, &lg);
      ASSERT_TRUE(st.ok()) << st.ToString();
      for (float v : lg) ASSERT_TRUE(std::isfinite(v)) << "step " << k;
      logits->push_back(std::move(lg));
    }
    (*e)->kv().Drain();
    *gpu_bytes = (*e)->GpuKvBytes(1);
    *stats = (*e)->decode_selection_stats();
    ASSERT_TRUE((*e)->Release(1).ok());
    (*e)->kv().Drain();
    EXPECT_EQ((*e)->kv().Stats().gpu.pool.used_blocks, 0);
    EXPECT_EQ((*e)->kv().Stats().host.pool.used_blocks, 0);
  };
  std::vector<std::vector<float>> resident, tiered;
  size_t resident_bytes = 0, tiered_bytes = 0;
  DecodeSelectionStats rs, ts;
  run(0, &resident, &resident_bytes, &rs);
  run(16384, &tiered, &tiered_bytes, &ts);
  ASSERT_EQ(resident.size(), tiered.size());
  for (size_t s = 0; s < resident.size(); ++s) {
    EXPECT_EQ(0, std::memcmp(resident[s].data(), tiered[s].data(), resident[s].size() * sizeof(float))) << "step " << s;
  }
  std::printf("tiered decode budget: gpu KV %zu of %zu bytes; %lld blocks fetched, %lld released, %lld of %lld "
              "selections kept by gamma\n",
              tiered_bytes, resident_bytes, static_cast<long long>(ts.blocks_fetched),
              static_cast<long long>(ts.blocks_released), static_cast<long long>(ts.kept_by_gamma),
              static_cast<long long>(ts.selections));
  EXPECT_LT(tiered_bytes * 2, resident_bytes);
  EXPECT_GT(ts.blocks_released, 0);
  EXPECT_EQ(ts.selections, rs.selections);
}

TEST(CudaModel, KeepEverythingIsDenseBitForBit) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  auto e = MakeEngine("synthetic:smollm2-135m", Device::kCuda, 4096);
  ASSERT_TRUE(e);
  const auto ids = RandomIds(300, e->config().vocab_size, 11);
  auto dense = e->Prefill(1, ids);
  PruningRequest keep_all;
  keep_all.mode = PruningMode::kExplicit;
  keep_all.config.stages = {{1, 1.0, true}};
  auto pruned = e->Prefill(2, ids, keep_all);
  ASSERT_TRUE(dense.ok() && pruned.ok());
  EXPECT_EQ(0, std::memcmp(dense->logits.data(), pruned->logits.data(), dense->logits.size() * sizeof(float)));
  EXPECT_EQ(dense->kv_bytes, pruned->kv_bytes);
}

TEST(CudaModel, PrunedPrefillKeepsWhatTheCpuKeeps) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  auto gpu = MakeEngine("synthetic:smollm2-135m", Device::kCuda, 4096);
  auto cpu = MakeEngine("synthetic:smollm2-135m", Device::kCpu, 4096);
  ASSERT_TRUE(gpu && cpu);
  const int vocab = cpu->config().vocab_size;
  const auto ids = RandomIds(1000, vocab, 12);  // 15 full blocks and a ragged tail of 40
  PruningRequest req;
  req.mode = PruningMode::kExplicit;
  req.config.stages = {{8, 512, false}, {16, 256, false}, {24, 128, false}};
  auto pg = gpu->Prefill(1, ids, req);
  auto pc = cpu->Prefill(1, ids, req);
  auto dg = gpu->Prefill(2, ids);
  ASSERT_TRUE(pg.ok()) << pg.status().ToString();
  ASSERT_TRUE(pc.ok() && dg.ok());
  ASSERT_EQ(pg->pruning.stages.size(), pc->pruning.stages.size());
  for (size_t i = 0; i < pg->pruning.stages.size(); ++i)
    EXPECT_EQ(pg->pruning.stages[i].tokens_kept, pc->pruning.stages[i].tokens_kept);
  for (int l = 0; l < gpu->config().n_layers; ++l)
    EXPECT_EQ(gpu->kv().Table(1, l).n_tokens, cpu->kv().Table(1, l).n_tokens) << "layer " << l;
  EXPECT_LT(pg->kv_bytes, dg->kv_bytes);
  // Block choices can differ where two blocks score within rounding of each other, so the
  // logits are reported, and required to be close to the CPU's rather than equal.
  const Diff d = Compare(pg->logits, pc->logits), dd = Compare(pg->logits, dg->logits);
  std::printf("pruned GPU vs pruned CPU: rel L2 %.3e (top1 in top5 %d); pruned vs dense GPU: %.3e\n", d.rel_l2,
              d.top1_in_top5, dd.rel_l2);
  EXPECT_LT(d.rel_l2, 0.1);
  EXPECT_GT(dd.rel_l2, d.rel_l2);  // pruning changed the result more than the backend did
  // Decode after a pruned prefill.
  DecodeItem it{1, 17};
  std::vector<float> lg, lc;
  ASSERT_TRUE(gpu->Decode({&it, 1}, &lg).ok());
  ASSERT_TRUE(cpu->Decode({&it, 1}, &lc).ok());
  EXPECT_LT(Compare(lg, lc).rel_l2, 0.1);
}

// Engine::Step on CUDA: a prompt prefilled in chunks (dense: the batched pass with another
// sequence's decode beside it; pruned: ForwardChunk segment passes with hidden states carried
// on the device) agrees with the same prompt prefilled whole on the GPU and on the CPU.
TEST(CudaModel, ChunkedPrefillAgreesWithWholePrefillAndTheCpu) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  auto gpu = MakeEngine("synthetic:smollm2-135m", Device::kCuda, 8192);
  auto cpu = MakeEngine("synthetic:smollm2-135m", Device::kCpu, 8192);
  ASSERT_TRUE(gpu && cpu);
  const int vocab = cpu->config().vocab_size;
  const auto ids = RandomIds(1000, vocab, 12);
  PruningRequest pruned;
  pruned.mode = PruningMode::kExplicit;
  pruned.config.stages = {{8, 512, false}, {16, 256, false}, {24, 128, false}};
  const PruningRequest dense;
  const auto other = RandomIds(50, vocab, 3);
  kv::SeqId seq = 10;
  for (const PruningRequest* req : std::vector<const PruningRequest*>{&dense, &pruned}) {
    SCOPED_TRACE(req == &dense ? "dense" : "pruned");
    auto whole_gpu = gpu->Prefill(seq, ids, *req);
    auto whole_cpu = cpu->Prefill(seq, ids, *req);
    ASSERT_TRUE(whole_gpu.ok() && whole_cpu.ok()) << whole_gpu.status().ToString();
    ASSERT_TRUE(gpu->Prefill(seq + 1, other).ok());
    StepItem chunk;
    chunk.kind = StepItem::Kind::kPrefill;
    chunk.seq = seq + 2;
    chunk.tokens = ids;
    chunk.pruning = req;
    const int32_t tok = 17;
    StepItem decode;
    decode.seq = seq + 1;
    decode.tokens = std::span<const int32_t>(&tok, 1);
    std::vector<StepOutput> out;
    int steps = 0;
    for (; steps < 100; ++steps) {
      const StepItem items[] = {decode, chunk};
      ASSERT_TRUE(gpu->Step(items, 160, &out).ok());
      ASSERT_TRUE(out[0].status.ok()) << out[0].status.ToString();
      ASSERT_TRUE(out[1].status.ok()) << out[1].status.ToString();
      if (out[1].done) break;
    }
    EXPECT_GE(steps, 2) << "the budget must split the prompt over several steps";
    ASSERT_TRUE(out[1].done);
    if (req == &pruned) {
      ASSERT_EQ(out[1].prefill.pruning.stages.size(), whole_gpu->pruning.stages.size());
      for (size_t i = 0; i < whole_gpu->pruning.stages.size(); ++i)
        EXPECT_EQ(out[1].prefill.pruning.stages[i].tokens_kept, whole_gpu->pruning.stages[i].tokens_kept);
    }
    for (int l = 0; l < gpu->config().n_layers; ++l)
      EXPECT_EQ(gpu->kv().Tokens(seq + 2, l), gpu->kv().Tokens(seq, l)) << "layer " << l;
    const Diff vs_whole = Compare(out[1].logits, whole_gpu->logits), vs_cpu = Compare(out[1].logits, whole_cpu->logits);
    std::printf("chunked vs whole GPU: rel L2 %.3e; chunked GPU vs whole CPU: %.3e\n", vs_whole.rel_l2, vs_cpu.rel_l2);
    EXPECT_LT(vs_whole.rel_l2, req == &dense ? 0.05 : 0.1);
    EXPECT_LT(vs_cpu.rel_l2, req == &dense ? 0.05 : 0.1);
    EXPECT_TRUE(vs_cpu.top1_in_top5);
    for (kv::SeqId s2 : {seq, seq + 1, seq + 2}) ASSERT_TRUE(gpu->Release(s2).ok());
    ASSERT_TRUE(cpu->Release(seq).ok());
    seq += 10;
  }
}

// The start-up warm-up on CUDA: prompts of every GEMM tuning bucket up to the limit, dense and
// with SmolLM2's default schedule, capped by the KV store (4096 tokens here), then nothing left
// behind; a prefill after it agrees with one on a fresh engine (whose tuner may pick other
// algorithms for the bucket: within bf16 rounding, not bit for bit).
TEST(CudaModel, WarmUpWalksTheTuningBucketsAndLeavesNothingBehind) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  auto e = MakeEngine("synthetic:smollm2-135m", Device::kCuda, 4096);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->backend()->TunedMinRows(), 256);
  const int64_t free0 = e->kv().FreeBlocks();
  for (const int64_t up_to : {int64_t{3000}, int64_t{1} << 20}) {
    const Status st = e->WarmUp(up_to);
    ASSERT_TRUE(st.ok()) << up_to << ": " << st.ToString();
    EXPECT_EQ(e->kv().FreeBlocks(), free0);
  }
  auto fresh = MakeEngine("synthetic:smollm2-135m", Device::kCuda, 4096);
  ASSERT_TRUE(fresh);
  const auto ids = RandomIds(700, e->config().vocab_size, 17);
  auto a = e->Prefill(1, ids);
  auto b = fresh->Prefill(1, ids);
  ASSERT_TRUE(a.ok() && b.ok());
  const Diff d = Compare(a->logits, b->logits);
  EXPECT_LT(d.rel_l2, 2e-2);
  EXPECT_TRUE(d.top1_in_top5);
}

TEST(CudaModel, GreedyGenerateIsDeterministic) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  auto e = MakeEngine("synthetic:smollm2-135m", Device::kCuda, 4096);
  ASSERT_TRUE(e);
  const auto ids = RandomIds(100, e->config().vocab_size, 13);
  SamplingParams sp;
  StopParams st;
  st.max_tokens = 12;
  st.ignore_eos = true;
  auto a = e->Generate(ids, sp, st);
  auto b = e->Generate(ids, sp, st);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->token_ids, b->token_ids);
  EXPECT_EQ(a->token_ids.size(), 12u);
}

}  // namespace
}  // namespace slim
