// Every CUDA backend op against the CPU backend (the reference) on fresh random inputs. Inputs
// are rounded to bf16 first so both backends see the same values; tolerances are stated per op
// as relative L2 error ||gpu - cpu|| / ||cpu||. Skipped where no CUDA device is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "kvstore/host_tier_memory.h"
#include "engine/backend/backend.h"
#include "tests/cuda/cuda_test_util.h"
#include "engine/model.h"
#include "engine/model/weight_source.h"
#include "engine/pruning/block_scorer.h"
#include "engine/pruning/decode_selection.h"
#include "kvstore/kv_store.h"

namespace slim {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f, bool bf16 = true) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = bf16 ? RoundBf16(dist(rng)) : dist(rng);
  return v;
}

class CudaOps : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    BackendOptions o;
    o.device = Device::kCuda;
    auto g = CreateBackend(o);
    if (g.ok()) gpu_ = std::move(*g).release();
    BackendOptions c;
    c.threads = 2;
    cpu_ = std::move(*CreateBackend(c)).release();
  }
  static void TearDownTestSuite() {
    delete gpu_;
    delete cpu_;
    gpu_ = nullptr;
    cpu_ = nullptr;
  }
  void SetUp() override {
    if (gpu_ == nullptr) GTEST_SKIP() << "no CUDA device";
  }


  static Backend* gpu_;
  static Backend* cpu_;
};
Backend* CudaOps::gpu_ = nullptr;
Backend* CudaOps::cpu_ = nullptr;

TEST_F(CudaOps, UploadDownloadRoundTrip) {
  const auto h = Random(37 * 53, 1);
  for (DType t : {DType::kF32, DType::kBF16}) {
    Buffer b = Put(gpu_, t, h, 37, 53);
    EXPECT_EQ(Get(gpu_, b.view()), h) << DTypeName(t);  // bf16-representable values survive exactly
    // A strided view: columns [5, 25) of every row.
    std::vector<float> want;
    for (int r = 0; r < 37; ++r)
      for (int c = 5; c < 25; ++c) want.push_back(h[static_cast<size_t>(r * 53 + c)]);
    EXPECT_EQ(Get(gpu_, b.view().Cols(5, 20)), want);
  }
}

TEST_F(CudaOps, SyntheticFillMatchesHostGenerator) {
  auto src = OpenWeights("synthetic:smollm2-135m", 99);
  ASSERT_TRUE(src.ok());
  for (const char* name : {"blk.3.attn_q.weight", "token_embd.weight", "blk.0.ffn_norm.weight"}) {
    const int64_t rows = std::string(name).find("norm") != std::string::npos ? 1 : 64, cols = 576;
    std::vector<float> host(static_cast<size_t>(rows * cols));
    ASSERT_TRUE((*src)->ReadF32(name, rows, cols, host.data()).ok());
    auto fill = (*src)->SyntheticSpec(name, cols);
    ASSERT_TRUE(fill.has_value());
    auto b = gpu_->Alloc(DType::kF32, rows, cols);
    ASSERT_TRUE(b.ok());
    ASSERT_TRUE(gpu_->FillSynthetic(*fill, b->view()).ok());
    const auto got = Get(gpu_, b->view());
    for (size_t i = 0; i < host.size(); ++i) {
      ASSERT_NEAR(got[i], host[i], std::fabs(host[i]) * 1.2e-7f) << name << " element " << i;
      ASSERT_EQ(SyntheticValue(*fill, static_cast<int64_t>(i)), host[i]);
    }
  }
}

TEST_F(CudaOps, Embed) {
  const int64_t vocab = 1000, d = 320, n = 77;
  const auto table = Random(static_cast<size_t>(vocab * d), 2);
  std::vector<int32_t> ids(n);
  std::mt19937 rng(3);
  for (auto& i : ids) i = static_cast<int32_t>(rng() % vocab);
  Buffer tg = Put(gpu_, DType::kBF16, table, vocab, d), tc = Put(cpu_, DType::kF32, table, vocab, d);
  auto og = gpu_->Alloc(DType::kF32, n, d);
  auto oc = cpu_->Alloc(DType::kF32, n, d);
  gpu_->Embed(tg.view(), ids, og->view());
  cpu_->Embed(tc.view(), ids, oc->view());
  EXPECT_EQ(Get(gpu_, og->view()), Get(cpu_, oc->view()));  // a copy: exact
}

TEST_F(CudaOps, RmsNormAddAndFused) {
  // 4096 and 576 (SmolLM2) take the register-resident kernel, 1001 the generic one.
  for (const int64_t d : {int64_t{4096}, int64_t{576}, int64_t{1001}}) {
    SCOPED_TRACE(d);
    const int64_t n = 33;
    const float eps = 1e-5f;
    const auto x = Random(static_cast<size_t>(n * d), 4, 3.0f, false), y = Random(static_cast<size_t>(n * d), 5);
    auto w = Random(static_cast<size_t>(d), 6, 0.1f, false);
    for (float& v : w) v += 1.0f;
    Buffer xg = Put(gpu_, DType::kF32, x, n, d), xc = Put(cpu_, DType::kF32, x, n, d);
    Buffer yg = Put(gpu_, DType::kBF16, y, n, d), yc = Put(cpu_, DType::kF32, y, n, d);
    Buffer wg = Put(gpu_, DType::kF32, w, 1, d), wc = Put(cpu_, DType::kF32, w, 1, d);
    auto og = gpu_->Alloc(DType::kBF16, n, d);
    auto oc = cpu_->Alloc(DType::kF32, n, d);
    // bf16 output: one rounding, relative error <= 2^-9 per element.
    gpu_->RmsNorm(xg.view(), wg.view(), eps, og->view());
    cpu_->RmsNorm(xc.view(), wc.view(), eps, oc->view());
    EXPECT_LT(RelL2(Get(gpu_, og->view()), Get(cpu_, oc->view())), 3e-3);
    // Fused add + norm: the f32 residual is exact up to fp32 rounding.
    gpu_->AddRmsNorm(xg.view(), yg.view(), wg.view(), eps, og->view());
    cpu_->AddRmsNorm(xc.view(), yc.view(), wc.view(), eps, oc->view());
    EXPECT_LT(RelL2(Get(gpu_, xg.view()), Get(cpu_, xc.view())), 1e-7);
    EXPECT_LT(RelL2(Get(gpu_, og->view()), Get(cpu_, oc->view())), 3e-3);
    // Plain add of a bf16 addend into an f32 accumulator.
    gpu_->Add(xg.view(), yg.view());
    cpu_->Add(xc.view(), yc.view());
    EXPECT_LT(RelL2(Get(gpu_, xg.view()), Get(cpu_, xc.view())), 1e-7);
  }
}

TEST_F(CudaOps, MatMulShapesAndOutputTypes) {
  struct Case {
    int64_t n, m, k;
  };
  for (Case c : {Case{1, 576, 576}, Case{3, 1000, 256}, Case{300, 960, 576}, Case{513, 2048, 1024}}) {
    const auto x = Random(static_cast<size_t>(c.n * c.k), 7), w = Random(static_cast<size_t>(c.m * c.k), 8, 0.05f);
    Buffer xg = Put(gpu_, DType::kBF16, x, c.n, c.k), xc = Put(cpu_, DType::kF32, x, c.n, c.k);
    Buffer wg = Put(gpu_, DType::kBF16, w, c.m, c.k), wc = Put(cpu_, DType::kF32, w, c.m, c.k);
    auto oc = cpu_->Alloc(DType::kF32, c.n, c.m);
    cpu_->MatMul(xc.view(), wc.view(), oc->view());
    const auto want = Get(cpu_, oc->view());
    // f32 output: fp32 accumulation of exact bf16 products.
    auto of = gpu_->Alloc(DType::kF32, c.n, c.m);
    gpu_->MatMul(xg.view(), wg.view(), of->view());
    EXPECT_LT(RelL2(Get(gpu_, of->view()), want), 1e-5) << c.n << "x" << c.m << "x" << c.k;
    // bf16 output into a strided view (columns [8, 8 + m) of a wider buffer).
    auto ob = gpu_->Alloc(DType::kBF16, c.n, c.m + 16);
    const TensorView view = ob->view().Cols(8, c.m);
    gpu_->MatMul(xg.view(), wg.view(), view);
    EXPECT_LT(RelL2(Get(gpu_, view), want), 3e-3) << c.n << "x" << c.m << "x" << c.k;
  }
}

TEST_F(CudaOps, RopeOnStridedHeadsWithLlama3Scaling) {
  ModelConfig c = *SyntheticConfig("synthetic:llama-3.1-8b");
  for (int rope_dim : {128, 64}) {
    c.rope_dim = rope_dim;  // also a partial rotation (first half of each head)
    const RopeTable rope = MakeRopeTable(c);
    const int64_t n = 70, heads = 8, hd = 128, width = 6 * 128 + heads * hd;
    const auto x = Random(static_cast<size_t>(n * width), 9);
    std::vector<int32_t> pos(n);
    std::mt19937 rng(10);
    for (auto& p : pos) p = static_cast<int32_t>(rng() % 131072);
    Buffer xg = Put(gpu_, DType::kBF16, x, n, width), xc = Put(cpu_, DType::kF32, x, n, width);
    gpu_->Rope(xg.view().Cols(6 * 128, heads * hd), static_cast<int>(heads), static_cast<int>(hd), pos, rope);
    cpu_->Rope(xc.view().Cols(6 * 128, heads * hd), static_cast<int>(heads), static_cast<int>(hd), pos, rope);
    const auto got = Get(gpu_, xg.view()), want = Get(cpu_, xc.view());
    EXPECT_LT(RelL2(got, want), 3e-3) << "rope_dim " << rope_dim;
    for (int64_t r = 0; r < n; ++r)  // columns outside the view untouched
      for (int64_t col = 0; col < 6 * 128; ++col)
        ASSERT_EQ(got[static_cast<size_t>(r * width + col)], x[static_cast<size_t>(r * width + col)]);
  }
}

TEST_F(CudaOps, SwiGlu) {
  for (int64_t ff : {1536, 1000}) {  // vectorized and scalar paths
    const int64_t n = 45;
    const auto gu = Random(static_cast<size_t>(n * 2 * ff), 11, 2.0f);
    Buffer g = Put(gpu_, DType::kBF16, gu, n, 2 * ff), c = Put(cpu_, DType::kF32, gu, n, 2 * ff);
    auto og = gpu_->Alloc(DType::kBF16, n, ff);
    auto oc = cpu_->Alloc(DType::kF32, n, ff);
    gpu_->SwiGlu(g.view(), og->view());
    cpu_->SwiGlu(c.view(), oc->view());
    EXPECT_LT(RelL2(Get(gpu_, og->view()), Get(cpu_, oc->view())), 3e-3) << ff;
  }
}

TEST_F(CudaOps, GatherRowsOutOfPlaceAndInPlace) {
  const int64_t n = 300, d = 200;
  const auto h = Random(static_cast<size_t>(n * d), 12);
  std::vector<int32_t> rows;
  for (int32_t r = 1; r < n; r += 3) rows.push_back(r);  // increasing, rows[i] >= i
  rows.push_back(static_cast<int32_t>(n - 1));
  const int64_t k = static_cast<int64_t>(rows.size());
  for (DType t : {DType::kF32, DType::kBF16}) {
    Buffer src = Put(gpu_, t, h, n, d);
    auto dst = gpu_->Alloc(t, k, d);
    gpu_->GatherRows(src.view(), rows, dst->view());
    const auto out = Get(gpu_, dst->view());
    for (int64_t i = 0; i < k; ++i)
      for (int64_t c = 0; c < d; ++c)
        ASSERT_EQ(out[static_cast<size_t>(i * d + c)], h[static_cast<size_t>(rows[static_cast<size_t>(i)] * d + c)]);
    gpu_->GatherRows(src.view(), rows, src.view().Rows(0, k));  // in place, as pruning does
    EXPECT_EQ(Get(gpu_, src.view().Rows(0, k)), out) << DTypeName(t);
  }
}

TEST_F(CudaOps, ScoreBlocksMatchesReference) {
  AttnShape shape{32, 8, 128, 1.0f / std::sqrt(128.0f)};
  for (int64_t n : {int64_t{64}, int64_t{1000}, int64_t{4099}}) {
    const int64_t qd = 32 * 128, kd = 8 * 128;
    const auto q = Random(static_cast<size_t>(n * qd), 13), k = Random(static_cast<size_t>(n * kd), 14);
    Buffer qg = Put(gpu_, DType::kBF16, q, n, qd), kg = Put(gpu_, DType::kBF16, k, n, kd);
    for (bool attention : {false, true}) {
      std::vector<float> got;
      ASSERT_TRUE(
          gpu_->ScoreBlocks(qg.view(), kg.view(), shape, 0, static_cast<int32_t>(n), 64, 8, 4, attention, &got).ok());
      BlockScoreParams p;
      p.n_heads = 32;
      p.n_kv_heads = 8;
      p.head_dim = 128;
      p.attention = attention;
      // The reference reads the bf16-rounded inputs the kernel reads.
      const auto want = ScoreBlocksRef(Get(gpu_, qg.view()).data(), qd, Get(gpu_, kg.view()).data(), kd, n, p);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_LT(RelL2(got, want), attention ? 1e-3 : 1e-4) << n << " attention " << attention;
      // The ranking the selection uses.
      EXPECT_EQ(SelectBlocks(got, (int64_t(got.size()) + 3) / 4), SelectBlocks(want, (int64_t(want.size()) + 3) / 4))
          << n << " attention " << attention;
    }
  }
}

// Two scorings in flight at once (Begin, Begin, then End, End) give what ScoreBlocks gives each,
// with the inputs overwritten between Begin and End (stream order keeps the scores); a shape whose
// unit scores start off a 16-byte boundary in the scratch (9 heads x a window of 1 x 3 rows); an
// End with nothing begun is refused.
TEST_F(CudaOps, BeginAndEndScoreBlocksMatchScoreBlocks) {
  struct Case {
    AttnShape shape;
    int64_t n;
    int window;
    bool attention;
  };
  const Case cases[] = {{{32, 8, 128, 1.0f / std::sqrt(128.0f)}, 4099, 1, false},
                        {{9, 3, 64, 1.0f / 8.0f}, 3, 1, true},
                        {{9, 3, 64, 1.0f / 8.0f}, 1000, 4, true}};
  for (const Case& c : cases) {
    const int64_t qd = int64_t{c.shape.n_heads} * c.shape.head_dim, kd = int64_t{c.shape.n_kv_heads} * c.shape.head_dim;
    const int32_t n = static_cast<int32_t>(c.n);
    Buffer q[2], k[2];
    std::vector<float> want[2];
    for (int i = 0; i < 2; ++i) {
      q[i] = Put(gpu_, DType::kBF16, Random(static_cast<size_t>(c.n * qd), 30 + i), c.n, qd);
      k[i] = Put(gpu_, DType::kBF16, Random(static_cast<size_t>(c.n * kd), 40 + i), c.n, kd);
      ASSERT_TRUE(gpu_->ScoreBlocks(q[i].view(), k[i].view(), c.shape, 0, n, 64, 8, c.window, c.attention, &want[i]).ok());
    }
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(gpu_->BeginScoreBlocks(i, q[i].view(), k[i].view(), c.shape, 0, n, 64, 8, c.window, c.attention).ok());
    }
    const std::vector<float> zeros(static_cast<size_t>(c.n * qd), 0.0f);
    for (int i = 0; i < 2; ++i) ASSERT_TRUE(gpu_->Upload(zeros.data(), q[i].view()).ok());  // queued after the scorings
    for (int i = 1; i >= 0; --i) {
      std::vector<float> got;
      ASSERT_TRUE(gpu_->EndScoreBlocks(i, &got).ok());
      EXPECT_EQ(got, want[i]) << "n " << c.n << " slot " << i;
    }
    std::vector<float> again;
    EXPECT_EQ(gpu_->EndScoreBlocks(0, &again).code(), StatusCode::kFailedPrecondition);
  }
}

// Attention over KV written by WriteKv, GPU (bf16 blocks) against CPU (f32 blocks): the same
// block tables on both (blocks taken in the same order), sequences written in chunks.
struct KvPair {
  std::unique_ptr<kv::TierMemory> cpu_memory, gpu_memory;  // outlive the stores
  std::unique_ptr<kv::KvStore> cpu, gpu;
};

KvPair MakeKv(Backend* gpu, const AttnShape& shape, int64_t blocks) {
  KvPair p;
  p.cpu_memory = std::make_unique<kv::HostTierMemory>();
  p.gpu_memory = std::move(*gpu->CreateKvMemory());
  kv::KvStoreOptions o;
  o.layout.n_layers = 1;
  o.layout.n_kv_heads = shape.n_kv_heads;
  o.layout.head_dim = shape.head_dim;
  o.layout.block_tokens = 64;
  o.gpu_blocks = blocks;
  o.layout.elem_bytes = 4;
  o.memory = p.cpu_memory.get();
  p.cpu = std::move(*kv::KvStore::Create(o));
  o.layout.elem_bytes = 2;
  o.memory = p.gpu_memory.get();
  p.gpu = std::move(*kv::KvStore::Create(o));
  return p;
}

// One step: each sequence gets `rows[i]` new rows (after what it already holds).
// With `rope`, q and k are rotated first (at positions n_past + r) by RopeWriteKv, fused on the GPU
// and Rope + WriteKv on the CPU, and the rotated q/k columns are compared too.
void AttendStep(Backend* gpu, Backend* cpu, KvPair& kv, const AttnShape& shape, const std::vector<int32_t>& rows,
                uint32_t seed, double tol, const char* what, const RopeTable* rope = nullptr) {
  const int64_t n = std::accumulate(rows.begin(), rows.end(), int64_t{0});
  const int64_t qd = int64_t{shape.n_heads} * shape.head_dim, kd = int64_t{shape.n_kv_heads} * shape.head_dim;
  const int64_t width = qd + 2 * kd;  // a fused qkv buffer, as the layer loop has
  const auto qkv = Random(static_cast<size_t>(n * width), seed);
  std::vector<AttnSeq> sg(rows.size()), sc(rows.size());
  int32_t r0 = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const kv::SeqId id = static_cast<kv::SeqId>(i);
    for (kv::KvStore* s : {kv.cpu.get(), kv.gpu.get()}) {
      if (!s->HasSequence(id)) {
        ASSERT_TRUE(s->AddSequence(id).ok());
      }
      ASSERT_TRUE(s->Reserve(id, 0, s->TablePtr(id, 0)->n_tokens + rows[i]).ok());
    }
    for (auto [store, vec] : {std::pair{kv.cpu.get(), &sc}, std::pair{kv.gpu.get(), &sg}}) {
      AttnSeq& a = (*vec)[i];
      a.row_begin = r0;
      a.n_rows = rows[i];
      a.table = store->TablePtr(id, 0);
      a.n_past = a.table->n_tokens;
    }
    ASSERT_EQ(sg[i].table->blocks, sc[i].table->blocks);
    r0 += rows[i];
  }
  auto put = [&](Backend* be, DType t) {
    auto b = be->Alloc(t, n, width);
    EXPECT_TRUE(be->Upload(qkv.data(), b->view()).ok());
    return std::move(*b);
  };
  Buffer xg = put(gpu, DType::kBF16), xc = put(cpu, DType::kF32);
  auto og = gpu->Alloc(DType::kBF16, n, qd);
  auto oc = cpu->Alloc(DType::kF32, n, qd);
  if (rope != nullptr) {
    std::vector<int32_t> pos;
    for (const AttnSeq& a : sc) {
      for (int32_t r = 0; r < a.n_rows; ++r) pos.push_back(a.n_past + r);
    }
    gpu->RopeWriteKv(*kv.gpu, sg, shape, xg.view().Cols(0, qd), xg.view().Cols(qd, kd), xg.view().Cols(qd + kd, kd),
                     pos, *rope);
    cpu->RopeWriteKv(*kv.cpu, sc, shape, xc.view().Cols(0, qd), xc.view().Cols(qd, kd), xc.view().Cols(qd + kd, kd),
                     pos, *rope);
    std::vector<float> gq(static_cast<size_t>(n * width)), cq(gq.size());
    ASSERT_TRUE(gpu->Download(xg.view(), gq.data()).ok());
    ASSERT_TRUE(cpu->Download(xc.view(), cq.data()).ok());
    EXPECT_LT(RelL2(gq, cq), 5e-3) << what << ": rotated q/k (bf16 rounding)";
  } else {
    gpu->WriteKv(*kv.gpu, sg, shape, xg.view().Cols(qd, kd), xg.view().Cols(qd + kd, kd));
    cpu->WriteKv(*kv.cpu, sc, shape, xc.view().Cols(qd, kd), xc.view().Cols(qd + kd, kd));
  }
  gpu->Attention(*kv.gpu, sg, shape, xg.view().Cols(0, qd), og->view());
  cpu->Attention(*kv.cpu, sc, shape, xc.view().Cols(0, qd), oc->view());
  std::vector<float> got(static_cast<size_t>(n * qd)), want(got.size());
  Status s = gpu->Download(og->view(), got.data());
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(cpu->Download(oc->view(), want.data()).ok());
  const double err = RelL2(got, want);
  EXPECT_LT(err, tol) << what;
  std::printf("attention %-44s rel L2 %.2e\n", what, err);
  for (size_t i = 0; i < rows.size(); ++i) {
    ASSERT_TRUE(kv.cpu->Append(static_cast<kv::SeqId>(i), 0, rows[i]).ok());
    ASSERT_TRUE(kv.gpu->Append(static_cast<kv::SeqId>(i), 0, rows[i]).ok());
  }
}

// bf16 K/V/Q and bf16 probabilities in P V: about 2^-8 relative error, averaged over the keys.
constexpr double kAttnTol = 1e-2;

// The decode selection's key summaries read straight from the paged K: blocks of two
// sequences interleaved (scattered ids), a length that ends inside a unit, against the host
// reference over the same bf16-rounded keys; bf16 and f32 outputs.
TEST_F(CudaOps, KeyUnitMeansOverScatteredBlocksMatchReference) {
  const AttnShape shape{32, 8, 128, 1.0f / std::sqrt(128.0f)};
  KvPair kv = MakeKv(gpu_, shape, 64);
  const int32_t n_tok = 997;
  const int64_t kd = int64_t{shape.n_kv_heads} * shape.head_dim;
  for (kv::SeqId id : {kv::SeqId{0}, kv::SeqId{1}}) ASSERT_TRUE(kv.gpu->AddSequence(id).ok());
  for (int32_t t = 64; t <= 1024; t += 64) {  // one block at a time, alternating sequences
    for (kv::SeqId id : {kv::SeqId{0}, kv::SeqId{1}}) ASSERT_TRUE(kv.gpu->Reserve(id, 0, t).ok());
  }
  const kv::LayerTable& table = *kv.gpu->TablePtr(1, 0);
  ASSERT_NE(table.blocks[1], table.blocks[0] + 1);
  const auto k = Random(static_cast<size_t>(n_tok * kd), 31);
  Buffer kg = Put(gpu_, DType::kBF16, k, n_tok, kd);
  AttnSeq s;
  s.n_rows = n_tok;
  s.table = &table;
  gpu_->WriteKv(*kv.gpu, std::span<const AttnSeq>(&s, 1), shape, kg.view(), kg.view());
  const auto want = UnitMeanKeys(k, n_tok, static_cast<int>(kd), 8);
  const int64_t n_units = (n_tok + 7) / 8;
  for (DType t : {DType::kBF16, DType::kF32}) {
    auto out = gpu_->Alloc(t, n_units, kd);
    ASSERT_TRUE(out.ok());
    Status st = gpu_->KeyUnitMeans(*kv.gpu, table, shape, n_tok, 8, out->view());
    ASSERT_TRUE(st.ok()) << st.ToString();
    const auto got = Get(gpu_, out->view());
    EXPECT_LT(RelL2(got, want), t == DType::kF32 ? 1e-6 : 5e-3) << DTypeName(t);
  }
  // A unit that does not divide the block, and a table too short, are refused.
  auto out = gpu_->Alloc(DType::kF32, n_units, kd);
  EXPECT_EQ(gpu_->KeyUnitMeans(*kv.gpu, table, shape, n_tok, 7, out->view()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu_->KeyUnitMeans(*kv.gpu, table, shape, 2000, 8, out->view()).code(), StatusCode::kInvalidArgument);
}

TEST_F(CudaOps, FlashPrefillChunksAndDecodeLlamaShape) {
  const AttnShape shape{32, 8, 128, 1.0f / std::sqrt(128.0f)};
  KvPair kv = MakeKv(gpu_, shape, 64);
  AttendStep(gpu_, cpu_, kv, shape, {300}, 20, kAttnTol, "hd128 G4 prefill 300 rows");
  AttendStep(gpu_, cpu_, kv, shape, {200}, 21, kAttnTol, "hd128 G4 chunk of 200 after 300 (n_past)");
  AttendStep(gpu_, cpu_, kv, shape, {1}, 22, kAttnTol, "hd128 G4 decode after 500");
  AttendStep(gpu_, cpu_, kv, shape, {4}, 23, kAttnTol, "hd128 G4 four rows after 501");
}

// The fused RoPE + KV append against the CPU's separate ops, LLaMA and SmolLM2 shapes, prefill
// chunks and decode steps (positions from each sequence's n_past); partial rotary dims take the
// 16-byte kernel (32 of 64) and the pairwise one (36 of 64: a chunk of 8 would be half rotated).
TEST_F(CudaOps, RopeWriteKvMatchesSeparateOps) {
  struct Case {
    AttnShape shape;
    double base;
    int rope_dim;
  };
  const AttnShape llama{32, 8, 128, 1.0f / std::sqrt(128.0f)}, smol{9, 3, 64, 1.0f / std::sqrt(64.0f)};
  for (const Case& c : {Case{llama, 500000.0, 128}, Case{smol, 100000.0, 64}, Case{smol, 10000.0, 32},
                        Case{smol, 10000.0, 36}}) {
    const AttnShape& shape = c.shape;
    SCOPED_TRACE(testing::Message() << "head_dim " << shape.head_dim << " rope_dim " << c.rope_dim);
    RopeTable rope;
    rope.rope_dim = c.rope_dim;
    for (int i = 0; i < c.rope_dim / 2; ++i) {
      rope.inv_freq.push_back(static_cast<float>(std::pow(c.base, -2.0 * i / c.rope_dim)));
    }
    KvPair kv = MakeKv(gpu_, shape, 64);
    AttendStep(gpu_, cpu_, kv, shape, {300, 70}, 40, kAttnTol, "rope+kv prefill 300 + 70 rows", &rope);
    AttendStep(gpu_, cpu_, kv, shape, {1, 1}, 41, kAttnTol, "rope+kv decode step", &rope);
    AttendStep(gpu_, cpu_, kv, shape, {5, 2}, 42, kAttnTol, "rope+kv few rows", &rope);
  }
}

// Both prefill kernels for head size 128 on their own backends: mma.sync everywhere, wgmma where
// the device has it (the default backend above already runs "auto", i.e. wgmma on an H200).
TEST_F(CudaOps, FlashKernelsEachMatchCpu) {
  const AttnShape shape{32, 8, 128, 1.0f / std::sqrt(128.0f)};
  for (const char* kernel : {"mma", "wgmma"}) {
    BackendOptions o;
    o.device = Device::kCuda;
    auto parsed = ParseAttentionKernel(kernel);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    o.cuda_attention = *parsed;
    auto be = CreateBackend(o);
    if (!be.ok() && be.status().code() == StatusCode::kUnavailable) {
      std::printf("attention kernel %s: %s (skipped)\n", kernel, be.status().ToString().c_str());
      continue;
    }
    ASSERT_TRUE(be.ok()) << be.status().ToString();
    KvPair kv = MakeKv(be->get(), shape, 96);
    const std::string k = kernel;
    AttendStep(be->get(), cpu_, kv, shape, {700, 65}, 60, kAttnTol, (k + " hd128 G4 batch of 700 + 65 rows").c_str());
    AttendStep(be->get(), cpu_, kv, shape, {129, 300}, 61, kAttnTol, (k + " hd128 G4 chunks after 700 / 65").c_str());
    AttendStep(be->get(), cpu_, kv, shape, {1, 1}, 62, kAttnTol, (k + " hd128 G4 decode").c_str());
  }
  auto be = ParseAttentionKernel("fa9");
  ASSERT_FALSE(be.ok());
  EXPECT_NE(be.status().message().find("fa9"), std::string::npos) << be.status().ToString();
}

TEST_F(CudaOps, FlashAndDecodeBatchSmolShape) {
  const AttnShape shape{9, 3, 64, 1.0f / std::sqrt(64.0f)};
  KvPair kv = MakeKv(gpu_, shape, 128);
  AttendStep(gpu_, cpu_, kv, shape, {1, 130, 64, 7, 129}, 30, kAttnTol, "hd64 G3 mixed batch");
  AttendStep(gpu_, cpu_, kv, shape, {1, 1, 1, 1, 1}, 31, kAttnTol, "hd64 G3 batched decode");
  AttendStep(gpu_, cpu_, kv, shape, {200, 1, 63, 1, 2}, 32, kAttnTol, "hd64 G3 mixed with n_past");
}

TEST_F(CudaOps, DecodeKernelServesOtherHeadSizes) {
  const AttnShape shape{4, 2, 16, 0.25f};  // synthetic:tiny: no flash kernel, every row decodes
  KvPair kv = MakeKv(gpu_, shape, 32);
  AttendStep(gpu_, cpu_, kv, shape, {150, 3}, 40, kAttnTol, "hd16 G2 prefill via decode kernel");
  AttendStep(gpu_, cpu_, kv, shape, {1, 1}, 41, kAttnTol, "hd16 G2 decode");
}

TEST_F(CudaOps, LongSequenceSplitsAgree) {
  const AttnShape shape{32, 8, 128, 1.0f / std::sqrt(128.0f)};
  KvPair kv = MakeKv(gpu_, shape, 80);
  AttendStep(gpu_, cpu_, kv, shape, {4500}, 50, kAttnTol, "hd128 G4 prefill 4500 rows");
  AttendStep(gpu_, cpu_, kv, shape, {1}, 51, kAttnTol, "hd128 G4 decode after 4500 (many splits)");
  // A batch long enough that each split of the block kernel runs several 128-key chunks (online
  // softmax across chunks) on any device up to ~700 multiprocessors.
  KvPair big = MakeKv(gpu_, shape, 8 * 40 + 8);
  AttendStep(gpu_, cpu_, big, shape, std::vector<int32_t>(8, 2500), 52, kAttnTol, "hd128 G4 prefill 8 x 2500 rows");
  AttendStep(gpu_, cpu_, big, shape, std::vector<int32_t>(8, 1), 53, kAttnTol, "hd128 G4 batched decode after 2500");
  AttendStep(gpu_, cpu_, big, shape, {1, 2, 1, 3, 1, 1, 8, 1}, 54, kAttnTol, "hd128 G4 batched few-row steps");
}

// Not a test (run by hand, --gtest_also_run_disabled_tests): the prefill attention alone at 32K,
// timed as shared/peers/hf_prefill.py times SDPA's ceiling (median of 5 calls after 2 warm-ups;
// 32 query heads over 8 KV heads, head size 128, causal, random q/k/v), so the two compare in
// one call. Inside a prefill the kernel shares the 700 W limit with the GEMMs.
TEST_F(CudaOps, DISABLED_FlashCausalThroughput) {
  const AttnShape shape{32, 8, 128, 1.0f / std::sqrt(128.0f)};
  for (const int64_t n : {int64_t{8192}, int64_t{32768}}) {
    kv::KvStoreOptions o;
    o.layout.n_layers = 1;
    o.layout.n_kv_heads = shape.n_kv_heads;
    o.layout.head_dim = shape.head_dim;
    o.layout.block_tokens = 64;
    o.layout.elem_bytes = 2;
    o.gpu_blocks = n / 64;
    auto memory = gpu_->CreateKvMemory();
    ASSERT_TRUE(memory.ok());
    o.memory = memory->get();
    auto store = kv::KvStore::Create(o);
    ASSERT_TRUE(store.ok());
    kv::KvStore& kv = **store;
    ASSERT_TRUE(kv.AddSequence(0).ok());
    ASSERT_TRUE(kv.Reserve(0, 0, n).ok());
    const int64_t qd = int64_t{shape.n_heads} * shape.head_dim, kd = int64_t{shape.n_kv_heads} * shape.head_dim;
    auto qkv = gpu_->Alloc(DType::kBF16, n, qd + 2 * kd);
    auto out = gpu_->Alloc(DType::kBF16, n, qd);
    ASSERT_TRUE(gpu_->FillSynthetic(SyntheticFill{.state = 5, .half_width = 1.0f}, qkv->view()).ok());
    std::vector<AttnSeq> seqs(1);
    seqs[0].row_begin = 0;
    seqs[0].n_rows = static_cast<int32_t>(n);
    seqs[0].n_past = 0;
    seqs[0].table = kv.TablePtr(0, 0);
    gpu_->WriteKv(kv, seqs, shape, qkv->view().Cols(qd, kd), qkv->view().Cols(qd + kd, kd));
    std::vector<double> ms;
    for (int i = 0; i < 7; ++i) {
      ASSERT_TRUE(gpu_->Sync().ok());
      const auto t0 = std::chrono::steady_clock::now();
      gpu_->Attention(kv, seqs, shape, qkv->view().Cols(0, qd), out->view());
      ASSERT_TRUE(gpu_->Sync().ok());
      if (i >= 2) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const double flop = 4.0 * shape.n_heads * static_cast<double>(n) * n / 2 * shape.head_dim;
    std::printf("prefill attention alone, causal %lld tokens: median %.3f ms, %.1f TFLOP/s\n",
                static_cast<long long>(n), ms[2], flop / ms[2] / 1e9);
  }
}

TEST_F(CudaOps, ErrorsAreReportedNotFatal) {
  auto a = gpu_->Alloc(DType::kBF16, 4, 8);
  auto b = gpu_->Alloc(DType::kBF16, 5, 9);
  auto o = gpu_->Alloc(DType::kF32, 4, 5);
  gpu_->MatMul(a->view(), b->view(), o->view());  // k differs: 8 vs 9
  Status s = gpu_->Sync();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("MatMul"), std::string::npos);
  EXPECT_TRUE(gpu_->Sync().ok());  // reported once; the backend keeps working
  const auto h = Random(32, 60);
  Buffer c = Put(gpu_, DType::kBF16, h, 4, 8);
  EXPECT_EQ(Get(gpu_, c.view()), h);
}

}  // namespace
}  // namespace slim
