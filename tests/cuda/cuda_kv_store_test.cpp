// The KV store on the GPU (CudaTierMemory): round trips of KV written by the backend's own
// kernels over scattered slots, and the two fences: an offload queued right behind a slow KV
// writer copies the final values (not what the slot held before), and a prefetch into a slot
// that attention is still about to read leaves that read with the old data. "Slow" is a queue of
// large GEMMs on the compute stream ahead of the KV op, so without the fences the copy engine
// would run first. Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "engine/backend/backend.h"
#include "kvstore/kv_store.h"
#include "tests/cuda/cuda_test_util.h"

namespace slim {
namespace {

constexpr int kHeads = 4, kKvHeads = 2, kHeadDim = 128, kBlock = 64;

class CudaKvStore : public ::testing::Test {
 protected:
  void SetUp() override {
    BackendOptions o;
    o.device = Device::kCuda;
    auto g = CreateBackend(o);
    if (!g.ok()) GTEST_SKIP() << "no CUDA device: " << g.status().ToString();
    gpu_ = std::move(*g);
    memory_ = std::move(*gpu_->CreateKvMemory());
    shape_ = AttnShape{kHeads, kKvHeads, kHeadDim, 1.0f / std::sqrt(static_cast<float>(kHeadDim))};
  }
  std::unique_ptr<kv::KvStore> Store(int64_t gpu_blocks, int64_t host_blocks) {
    kv::KvStoreOptions o;
    o.layout.n_layers = 1;
    o.layout.n_kv_heads = kKvHeads;
    o.layout.head_dim = kHeadDim;
    o.layout.block_tokens = kBlock;
    o.layout.elem_bytes = 2;
    o.memory = memory_.get();
    o.gpu_blocks = gpu_blocks;
    o.host_blocks = host_blocks;
    o.poison_freed = false;
    auto s = kv::KvStore::Create(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }
  Buffer Upload(const std::vector<float>& host, int64_t rows, int64_t cols) {
    Buffer b = std::move(*gpu_->Alloc(DType::kBF16, rows, cols));
    EXPECT_TRUE(gpu_->Upload(host.data(), b.view()).ok());
    return b;
  }
  // A block of the gpu tier as a bf16 row of the backend, for Upload / Download.
  TensorView Slot(const kv::KvStore& kv, kv::BlockId b) const {
    const int64_t n = static_cast<int64_t>(kv.layout().BlockBytes() / 2);
    return TensorView{kv.Data(b), DType::kBF16, Device::kCuda, 1, n, n};
  }
  std::vector<float> Download(TensorView v) {
    std::vector<float> out(static_cast<size_t>(v.numel()));
    EXPECT_TRUE(gpu_->Download(v, out.data()).ok());
    return out;
  }
  std::vector<float> HostBlock(const kv::KvStore& kv, kv::BlockId host_slot) const {
    const size_t n = kv.layout().BlockBytes() / 2;
    const auto* p = reinterpret_cast<const uint16_t*>(kv.HostData(host_slot));
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t u = static_cast<uint32_t>(p[i]) << 16;
      std::memcpy(&out[i], &u, 4);
    }
    return out;
  }
  // About 50 ms of bf16 GEMMs queued on the compute stream.
  void SlowCompute() {
    if (big_x_.empty()) {
      big_x_ = std::move(*gpu_->Alloc(DType::kBF16, 8192, 8192));
      big_w_ = std::move(*gpu_->Alloc(DType::kBF16, 8192, 8192));
      big_o_ = std::move(*gpu_->Alloc(DType::kBF16, 8192, 8192));
      const std::vector<float> zeros(static_cast<size_t>(8192) * 8192, 0.0f);
      ASSERT_TRUE(gpu_->Upload(zeros.data(), big_x_.view()).ok());
      ASSERT_TRUE(gpu_->Upload(zeros.data(), big_w_.view()).ok());
    }
    for (int i = 0; i < 40; ++i) gpu_->MatMul(big_x_.view(), big_w_.view(), big_o_.view());
  }
  // Writes 64 tokens of k / v [64, kv_heads * head_dim] into (seq, layer 0) inside the compute protocol.
  void WriteBlock(kv::KvStore& kv, kv::SeqId seq, const Buffer& k, const Buffer& v, bool slow) {
    const std::vector<kv::SeqId> ids{seq};
    ASSERT_TRUE(kv.BeginCompute(ids).ok());
    if (slow) SlowCompute();
    kv.AwaitLayer(0);
    AttnSeq a{0, kBlock, 0, kv.TablePtr(seq, 0)};
    gpu_->WriteKv(kv, std::span<const AttnSeq>(&a, 1), shape_, k.view(), v.view());
    ASSERT_TRUE(kv.Append(seq, 0, kBlock).ok());
    kv.EndCompute(ids);
  }

  std::unique_ptr<Backend> gpu_;
  std::unique_ptr<kv::TierMemory> memory_;  // outlives the stores of each test
  AttnShape shape_;
  Buffer big_x_, big_w_, big_o_;
};

TEST_F(CudaKvStore, OffloadRightBehindASlowWriterCopiesTheFinalValues) {
  auto kv = Store(4, 4);
  ASSERT_NE(kv, nullptr);
  ASSERT_TRUE(kv->AddSequence(1).ok());
  ASSERT_TRUE(kv->Reserve(1, 0, kBlock).ok());
  const kv::BlockId slot = kv->Table(1, 0).blocks[0];
  const std::vector<float> zeros(kv->layout().BlockBytes() / 2, 0.0f);
  ASSERT_TRUE(gpu_->Upload(zeros.data(), Slot(*kv, slot)).ok());
  ASSERT_TRUE(gpu_->Sync().ok());
  const int64_t kvd = int64_t{kKvHeads} * kHeadDim;
  const Buffer k = Upload(RandomBf16(static_cast<size_t>(kBlock * kvd), 1, 1.0f), kBlock, kvd);
  const Buffer v = Upload(RandomBf16(static_cast<size_t>(kBlock * kvd), 2, 1.0f), kBlock, kvd);
  WriteBlock(*kv, 1, k, v, /*slow=*/true);
  auto t = kv->Offload(1, true);  // queued at once, while the GEMMs still run
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_TRUE(kv->HostWait(*t).ok());
  ASSERT_TRUE(gpu_->Sync().ok());
  const kv::LayerTable table = kv->Table(1, 0);
  const std::vector<float> host = HostBlock(*kv, table.host[0]);
  const std::vector<float> final_values = Download(Slot(*kv, slot));  // the freed slot still holds them
  EXPECT_EQ(host, final_values);
  EXPECT_NE(host, zeros) << "the copy ran before the KV write";
}

TEST_F(CudaKvStore, PrefetchIntoASlotAttentionStillReadsWaitsForTheRead) {
  // One gpu slot: B is written, offloaded; A takes the slot; attention over A is queued behind
  // slow work; A is freed and B prefetched into the same slot at once.
  auto kv = Store(1, 4);
  ASSERT_NE(kv, nullptr);
  const int64_t kvd = int64_t{kKvHeads} * kHeadDim, qd = int64_t{kHeads} * kHeadDim;
  const Buffer kb = Upload(RandomBf16(static_cast<size_t>(kBlock * kvd), 3, 1.0f), kBlock, kvd);
  const Buffer vb = Upload(RandomBf16(static_cast<size_t>(kBlock * kvd), 4, 1.0f), kBlock, kvd);
  const Buffer ka = Upload(RandomBf16(static_cast<size_t>(kBlock * kvd), 5, 1.0f), kBlock, kvd);
  const Buffer va = Upload(RandomBf16(static_cast<size_t>(kBlock * kvd), 6, 1.0f), kBlock, kvd);
  const Buffer q = Upload(RandomBf16(static_cast<size_t>(qd), 7, 1.0f), 1, qd);
  Buffer out = std::move(*gpu_->Alloc(DType::kBF16, 1, qd));
  ASSERT_TRUE(kv->AddSequence(2).ok());
  ASSERT_TRUE(kv->Reserve(2, 0, kBlock).ok());
  WriteBlock(*kv, 2, kb, vb, false);
  auto off = kv->Offload(2, true);
  ASSERT_TRUE(off.ok());
  ASSERT_TRUE(kv->HostWait(*off).ok());
  ASSERT_TRUE(kv->AddSequence(1).ok());
  ASSERT_TRUE(kv->Reserve(1, 0, kBlock).ok());
  WriteBlock(*kv, 1, ka, va, false);
  // The last token of A attends to all 64 of A's keys: the reference, with nothing in flight.
  AttnSeq a{0, 1, kBlock - 1, kv->TablePtr(1, 0)};
  gpu_->Attention(*kv, std::span<const AttnSeq>(&a, 1), shape_, q.view(), out.view());
  const std::vector<float> want = Download(out.view());
  const std::vector<float> zeros(static_cast<size_t>(qd), 0.0f);
  ASSERT_TRUE(gpu_->Upload(zeros.data(), out.view()).ok());
  const std::vector<kv::SeqId> ids{1};
  ASSERT_TRUE(kv->BeginCompute(ids).ok());
  SlowCompute();
  gpu_->Attention(*kv, std::span<const AttnSeq>(&a, 1), shape_, q.view(), out.view());
  kv->EndCompute(ids);
  ASSERT_TRUE(kv->Free(1).ok());
  auto pre = kv->Prefetch(2);  // takes the one slot attention is about to read
  ASSERT_TRUE(pre.ok()) << pre.status().ToString();
  ASSERT_TRUE(kv->HostWait(*pre).ok());
  ASSERT_TRUE(gpu_->Sync().ok());
  EXPECT_EQ(Download(out.view()), want) << "attention read the prefetched data";
  // And the slot now holds B again, byte for byte as it was offloaded.
  EXPECT_EQ(Download(Slot(*kv, kv->Table(2, 0).blocks[0])), HostBlock(*kv, kv->Table(2, 0).host[0]));
}

// The decode KV manager's residency moves: blocks written through, released, then fetched back
// inside a compute pass and read on the compute stream right after AwaitLayer, while the copy
// (64 MiB, over a millisecond) is still running. The read must see the fetched bytes, not the
// zeros the slots held, and the stall must be measured and counted as late.
TEST_F(CudaKvStore, ALatePrefetchIsWaitedForOnTheDeviceAndCountedLate) {
  constexpr int64_t kN = 1024;
  auto kv = Store(kN, kN);
  ASSERT_NE(kv, nullptr);
  ASSERT_TRUE(kv->AddSequence(1).ok());
  ASSERT_TRUE(kv->Reserve(1, 0, kN * kBlock).ok());
  ASSERT_TRUE(kv->Append(1, 0, static_cast<int32_t>(kN * kBlock)).ok());
  const size_t per_block = kv->layout().BlockBytes() / 2;
  const kv::GpuView view = kv->View();
  const TensorView arena{view.base, DType::kBF16, Device::kCuda, kN, static_cast<int64_t>(per_block),
                         static_cast<int64_t>(per_block)};
  const std::vector<float> data = RandomBf16(static_cast<size_t>(kN) * per_block, 21, 1.0f);
  ASSERT_TRUE(gpu_->Upload(data.data(), arena).ok());
  const kv::KvStore::Residency all_released{0, kN, {}};
  auto wt = kv->WriteThrough(1, std::span<const kv::KvStore::Residency>(&all_released, 1));
  ASSERT_TRUE(wt.ok()) << wt.status().ToString();
  ASSERT_TRUE(kv->HostWait(*wt).ok());
  auto rel = kv->SetResidency(1, std::span<const kv::KvStore::Residency>(&all_released, 1));
  ASSERT_TRUE(rel.ok()) << rel.status().ToString();
  EXPECT_EQ(rel->released, kN);
  EXPECT_EQ(rel->fetched, 0);
  EXPECT_EQ(kv->GpuBlocks(1), 0);
  const std::vector<float> zeros(static_cast<size_t>(kN) * per_block, 0.0f);
  ASSERT_TRUE(gpu_->Upload(zeros.data(), arena).ok());  // stale slots read as zeros
  std::vector<int32_t> every(static_cast<size_t>(kN));
  for (int32_t b = 0; b < kN; ++b) every[static_cast<size_t>(b)] = b;
  const kv::KvStore::Residency all_kept{0, kN, every};
  const std::vector<kv::SeqId> ids{1};
  ASSERT_TRUE(kv->BeginCompute(ids).ok());
  auto fetch = kv->SetResidency(1, std::span<const kv::KvStore::Residency>(&all_kept, 1));
  ASSERT_TRUE(fetch.ok()) << fetch.status().ToString();
  EXPECT_EQ(fetch->fetched, kN);
  kv->AwaitLayer(0);
  // The last block copied, read on the compute stream at once.
  const kv::LayerTable t = kv->Table(1, 0);
  const std::vector<float> got = Download(Slot(*kv, t.blocks[kN - 1]));
  kv->EndCompute(ids);
  const std::vector<float> want(data.end() - static_cast<std::ptrdiff_t>(per_block), data.end());
  EXPECT_EQ(got, want) << "compute read the slot before the prefetch landed";
  ASSERT_TRUE(kv->HostWait(fetch->ticket).ok());
  ASSERT_TRUE(gpu_->Sync().ok());
  const kv::KvStoreStats st = kv->Stats();
  EXPECT_EQ(st.transfers.prefetch_late, 1);
  EXPECT_EQ(st.transfers.prefetch_on_time, 0);
  EXPECT_GT(st.transfers.prefetch_stall_seconds, 1e-4);
  EXPECT_EQ(st.transfers.bytes[0], kN * static_cast<int64_t>(kv->layout().BlockBytes()));
  std::printf("64 MiB prefetch: compute stood still %.3f ms; copy-stream time %.3f ms\n",
              st.transfers.prefetch_stall_seconds * 1e3, st.transfers.seconds[0] * 1e3);
  ASSERT_TRUE(kv->Free(1).ok());
  kv->Drain();
  EXPECT_EQ(kv->Stats().gpu.pool.used_blocks, 0);
  EXPECT_EQ(kv->Stats().host.pool.used_blocks, 0);
}

TEST_F(CudaKvStore, RoundTripOverScatteredSlotsKeepsEveryBlock) {
  auto kv = Store(24, 32);
  ASSERT_NE(kv, nullptr);
  const int64_t kvd = int64_t{kKvHeads} * kHeadDim;
  std::vector<std::vector<float>> before;
  // Three sequences of 1..4 blocks written in turns, so each one's blocks lie between the others'.
  const int blocks[3] = {3, 4, 2};
  for (kv::SeqId s = 0; s < 3; ++s) ASSERT_TRUE(kv->AddSequence(s).ok());
  for (int b = 0; b < 4; ++b) {
    for (kv::SeqId s = 0; s < 3; ++s) {
      if (b >= blocks[s]) continue;
      ASSERT_TRUE(kv->Reserve(s, 0, int64_t{b + 1} * kBlock).ok());
      const Buffer k = Upload(RandomBf16(static_cast<size_t>(kBlock * kvd), 10 + s * 8 + b, 1.0f), kBlock, kvd);
      const Buffer v = Upload(RandomBf16(static_cast<size_t>(kBlock * kvd), 50 + s * 8 + b, 1.0f), kBlock, kvd);
      const std::vector<kv::SeqId> ids{s};
      ASSERT_TRUE(kv->BeginCompute(ids).ok());
      AttnSeq a{0, kBlock, b * kBlock, kv->TablePtr(s, 0)};
      gpu_->WriteKv(*kv, std::span<const AttnSeq>(&a, 1), shape_, k.view(), v.view());
      ASSERT_TRUE(kv->Append(s, 0, kBlock).ok());
      kv->EndCompute(ids);
    }
  }
  auto snapshot = [&](kv::SeqId s) {
    std::vector<std::vector<float>> out;
    for (kv::BlockId b : kv->Table(s, 0).blocks) out.push_back(Download(Slot(*kv, b)));
    return out;
  };
  const auto s0 = snapshot(0), s1 = snapshot(1), s2 = snapshot(2);
  auto off = kv->Offload(1, true);
  ASSERT_TRUE(off.ok());
  // Another sequence takes the freed slots and writes over them before sequence 1 comes back.
  ASSERT_TRUE(kv->AddSequence(9).ok());
  ASSERT_TRUE(kv->Reserve(9, 0, 4 * kBlock).ok());
  for (kv::BlockId b : kv->Table(9, 0).blocks) {
    const std::vector<float> noise = RandomBf16(kv->layout().BlockBytes() / 2, 99 + static_cast<uint64_t>(b), 1.0f);
    ASSERT_TRUE(kv->BeginCompute(std::vector<kv::SeqId>{9}).ok());
    ASSERT_TRUE(gpu_->Upload(noise.data(), Slot(*kv, b)).ok());
    kv->EndCompute(std::vector<kv::SeqId>{9});
  }
  auto back = kv->Prefetch(1);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_TRUE(kv->BeginCompute(std::vector<kv::SeqId>{1}).ok());
  kv->AwaitLayer(0);
  kv->EndCompute(std::vector<kv::SeqId>{1});
  ASSERT_TRUE(kv->HostWait(*back).ok());
  ASSERT_TRUE(gpu_->Sync().ok());
  EXPECT_EQ(snapshot(0), s0);
  EXPECT_EQ(snapshot(1), s1);
  EXPECT_EQ(snapshot(2), s2);
  const kv::KvStoreStats st = kv->Stats();
  EXPECT_EQ(st.transfers.bytes[0], 4 * static_cast<int64_t>(kv->layout().BlockBytes()));
  EXPECT_EQ(st.transfers.bytes[1], 4 * static_cast<int64_t>(kv->layout().BlockBytes()));
  EXPECT_GT(st.transfers.seconds[0], 0.0);
  EXPECT_GT(st.transfers.seconds[1], 0.0);
  for (kv::SeqId s : {0, 1, 2, 9}) ASSERT_TRUE(kv->Free(s).ok());
  kv->Drain();
  EXPECT_EQ(kv->Stats().gpu.pool.used_blocks, 0);
  EXPECT_EQ(kv->Stats().host.pool.used_blocks, 0);
}

}  // namespace
}  // namespace slim
