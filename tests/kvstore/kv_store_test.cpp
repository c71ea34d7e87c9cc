// KvStore and BlockPool: allocation, all-or-nothing reservation, free, counts, data integrity;
// offload/prefetch round trips with seeded data over random scatter (mapped blocks equal,
// unmapped untouched, source unchanged), block states, clean blocks never copied twice,
// transfer stats equal to the bytes moved, NaN poisoning of freed blocks, and a multi-threaded
// stress run against a reference model of every sequence's bytes.
#include "kvstore/kv_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "kvstore/copy_engine.h"
#include "kvstore/host_tier_memory.h"

namespace slim::kv {
namespace {

HostTierMemory* Memory() {
  static HostTierMemory m;
  return &m;
}

KvStoreOptions SmallOptions(int64_t blocks, int64_t host_blocks = 0) {
  KvStoreOptions o;
  o.layout.n_layers = 3;
  o.layout.n_kv_heads = 2;
  o.layout.head_dim = 8;
  o.layout.block_tokens = 64;
  o.memory = Memory();
  o.gpu_blocks = blocks;
  o.host_blocks = host_blocks;
  return o;
}

TEST(BlockPool, AllocateReleaseAndRefCounts) {
  std::vector<uint8_t> arena(4 * 128);
  BlockPool pool(Tier::kHost, 128);
  pool.AddChunk(arena.data(), 4);
  std::vector<BlockId> ids;
  ASSERT_TRUE(pool.Allocate(3, &ids).ok());
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_EQ(pool.free_blocks(), 1);
  Status s = pool.Allocate(2, &ids);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(ids.size(), 3u) << "a failed allocation takes nothing";
  pool.AddRef(ids[0]);
  pool.Release(ids[0], {});
  EXPECT_EQ(pool.free_blocks(), 1);
  pool.Release(ids[0], {});
  EXPECT_EQ(pool.free_blocks(), 2);
  pool.Release(ids[0], {});  // double release is ignored
  EXPECT_EQ(pool.free_blocks(), 2);
  EXPECT_EQ(pool.Data(ids[1]), arena.data() + 128 * ids[1]);
  auto st = pool.Stats();
  EXPECT_EQ(st.used_blocks, 2);
  EXPECT_EQ(st.allocations, 3);
  EXPECT_EQ(st.releases, 1);
}

TEST(BlockPool, ChunksGrowThePoolAndStampsTravelWithSlots) {
  std::vector<uint8_t> a(2 * 64), b(3 * 64);
  BlockPool pool(Tier::kHost, 64);
  pool.AddChunk(a.data(), 2);
  pool.AddChunk(b.data(), 3);
  EXPECT_EQ(pool.total_blocks(), 5);
  std::vector<BlockId> ids;
  ASSERT_TRUE(pool.Allocate(5, &ids).ok());
  EXPECT_EQ(ids[0], 0) << "low ids first";
  EXPECT_EQ(pool.Data(3), b.data() + 64);
  pool.Release(ids[4], SlotStamp{7, 3, 9});
  SlotStamp got;
  std::vector<BlockId> again;
  ASSERT_TRUE(pool.Allocate(1, &again, &got).ok());
  EXPECT_EQ(got.compute, 7u);
  EXPECT_EQ(got.h2d, 3u);
  EXPECT_EQ(got.d2h, 9u);
}

// The free slots are handed out lowest id first whatever the order they came back in, across
// bitmap words and chunks that do not start on a word: checked against a std::set model over a
// random mix of allocations and releases.
TEST(BlockPool, HandsOutTheLowestFreeIdsAcrossWordsAndChunks) {
  BlockPool pool(Tier::kHost, 1);
  std::vector<uint8_t> a(70), b(130);
  pool.AddChunk(a.data(), 70);
  pool.AddChunk(b.data(), 130);
  std::set<BlockId> model;
  for (BlockId i = 0; i < 200; ++i) model.insert(i);
  std::vector<BlockId> held;
  std::mt19937 rng(5);
  for (int round = 0; round < 3000; ++round) {
    if (!held.empty() && (rng() % 2 == 0 || model.empty())) {
      const size_t k = rng() % held.size();
      ASSERT_TRUE(pool.Release(held[k], {}));
      model.insert(held[k]);
      held[k] = held.back();
      held.pop_back();
    } else {
      const int64_t n = std::min<int64_t>(1 + rng() % 5, static_cast<int64_t>(model.size()));
      std::vector<BlockId> got;
      ASSERT_TRUE(pool.Allocate(n, &got).ok());
      for (BlockId id : got) {
        ASSERT_EQ(id, *model.begin()) << "round " << round;
        model.erase(model.begin());
        held.push_back(id);
      }
    }
    ASSERT_EQ(pool.free_blocks(), static_cast<int64_t>(model.size()));
  }
  std::vector<BlockId> rest;
  ASSERT_TRUE(pool.Allocate(pool.free_blocks(), &rest).ok());
  EXPECT_EQ(pool.free_blocks(), 0);
  EXPECT_EQ(pool.Allocate(1, &rest).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(pool.Data(199), b.data() + 129);
}

// Host memory that records the destination of each batched copy, in the order issued.
class RecordingMemory final : public TierMemory {
 public:
  const char* Name() const override { return "recording"; }
  size_t GpuFreeBytes() const override { return host_.GpuFreeBytes(); }
  StatusOr<void*> AllocGpu(size_t bytes) override { return host_.AllocGpu(bytes); }
  void FreeGpu(void* p) override { host_.FreeGpu(p); }
  StatusOr<void*> AllocHost(size_t bytes) override { return host_.AllocHost(bytes); }
  void FreeHost(void* p) override { host_.FreeHost(p); }
  void Fill(bool tier_is_gpu, void* p, size_t bytes, uint8_t byte) override { host_.Fill(tier_is_gpu, p, bytes, byte); }
  Fence RecordCompute() override { return host_.RecordCompute(); }
  void ComputeWait(Marker m) override { host_.ComputeWait(m); }
  StatusOr<Marker> Mark(CopyDir dir) override { return host_.Mark(dir); }
  StatusOr<Marker> CopyBatch(CopyDir dir, Fence after, std::span<const CopyRange> ranges) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const CopyRange& r : ranges) dsts_.push_back(r.dst);
    }
    return host_.CopyBatch(dir, after, ranges);
  }
  Status HostWait(Marker m) override { return host_.HostWait(m); }
  double Elapsed(Marker from, Marker to) override { return host_.Elapsed(from, to); }
  void ReleaseMarker(Marker m) override { host_.ReleaseMarker(m); }
  std::vector<void*> Dsts() {
    std::lock_guard<std::mutex> l(mu_);
    return dsts_;
  }

 private:
  HostTierMemory host_;
  std::mutex mu_;
  std::vector<void*> dsts_;
};

// A job's groups go out in its `order` (most urgent first), each group's compute wait still
// keyed by its index; an order that is not a permutation falls back to index order.
TEST(CopyEngine, IssuesGroupsInTheJobsOrder) {
  RecordingMemory mem;
  CopyEngine engine(&mem, nullptr);
  uint8_t src[4] = {1, 2, 3, 4}, dst[4] = {};
  auto job = [&](std::vector<size_t> order) {
    CopyJob j;
    j.dir = CopyDir::kH2D;
    for (int g = 0; g < 4; ++g) j.groups.push_back({CopyRange{dst + g, src + g, 1}});
    j.order = std::move(order);
    return j;
  };
  const TicketId a = engine.Submit(job({2, 0, 3, 1}));
  engine.ComputeWait(a, 3);
  engine.ComputeWait(a, -1);
  ASSERT_TRUE(engine.HostWait(a).ok());
  EXPECT_EQ(mem.Dsts(), (std::vector<void*>{dst + 2, dst + 0, dst + 3, dst + 1}));
  EXPECT_EQ(std::vector<uint8_t>(dst, dst + 4), (std::vector<uint8_t>{1, 2, 3, 4}));
  const TicketId b = engine.Submit(job({2, 2, 0, 1}));  // not a permutation
  ASSERT_TRUE(engine.HostWait(b).ok());
  const std::vector<void*> all = mem.Dsts();
  EXPECT_EQ(std::vector<void*>(all.begin() + 4, all.end()), (std::vector<void*>{dst, dst + 1, dst + 2, dst + 3}));
}

TEST(KvStore, RejectsBadSizes) {
  EXPECT_FALSE(KvStore::Create(SmallOptions(0)).ok());
  KvStoreOptions o = SmallOptions(4);
  o.memory = nullptr;
  EXPECT_FALSE(KvStore::Create(o).ok());
  o = SmallOptions(4);
  o.layout.head_dim = 0;
  EXPECT_FALSE(KvStore::Create(o).ok());
}

TEST(KvStore, ReservePerLayerAndFree) {
  auto store = KvStore::Create(SmallOptions(16));
  ASSERT_TRUE(store.ok());
  KvStore& kv = **store;
  ASSERT_TRUE(kv.AddSequence(7).ok());
  EXPECT_EQ(kv.AddSequence(7).code(), StatusCode::kAlreadyExists);
  // Pruned-like shape: 200 tokens at layer 0, 100 at layer 1, 10 at layer 2.
  std::vector<int64_t> per_layer = {200, 100, 10};
  EXPECT_EQ(kv.BlocksNeeded(7, per_layer), 4 + 2 + 1);
  ASSERT_TRUE(kv.ReserveAll(7, per_layer).ok());
  EXPECT_EQ(kv.FreeBlocks(), 16 - 7);
  EXPECT_EQ(kv.Table(7, 0).capacity(), 4);
  EXPECT_EQ(kv.Table(7, 1).capacity(), 2);
  EXPECT_EQ(kv.Table(7, 2).capacity(), 1);
  ASSERT_TRUE(kv.Append(7, 0, 200).ok());
  EXPECT_EQ(kv.Append(7, 2, 65).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(kv.Table(7, 0).n_tokens, 200);
  // Growing by one token inside the last block takes nothing; crossing a boundary takes one.
  EXPECT_EQ(kv.BlocksNeeded(7, {256, 100, 10}), 0);
  EXPECT_EQ(kv.BlocksNeeded(7, {257, 100, 10}), 1);
  auto st = kv.Stats();
  EXPECT_EQ(st.sequences, 1);
  EXPECT_EQ(st.tokens_stored, 200);
  EXPECT_EQ(st.gpu.pool.used_blocks, 7);
  EXPECT_EQ(st.gpu.bytes_in_use, 7 * kv.layout().BlockBytes());
  // Layer 0: three full blocks, one being written; the other layers' reserved blocks are writing.
  EXPECT_EQ(st.gpu.by_state[static_cast<int>(BlockState::kGpuOnly)], 3);
  EXPECT_EQ(st.gpu.by_state[static_cast<int>(BlockState::kWriting)], 4);
  ASSERT_TRUE(kv.Free(7).ok());
  EXPECT_EQ(kv.FreeBlocks(), 16);
  EXPECT_EQ(kv.Free(7).code(), StatusCode::kNotFound);
}

TEST(KvStore, ReserveIsAllOrNothing) {
  auto store = KvStore::Create(SmallOptions(5));
  ASSERT_TRUE(store.ok());
  KvStore& kv = **store;
  ASSERT_TRUE(kv.AddSequence(1).ok());
  Status s = kv.ReserveAll(1, {192, 192, 64});  // 3 + 3 + 1 = 7 > 5
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(kv.FreeBlocks(), 5);
  EXPECT_EQ(kv.Table(1, 0).capacity(), 0);
}

TEST(KvStore, BlockDataIsPrivatePerBlock) {
  auto store = KvStore::Create(SmallOptions(8));
  ASSERT_TRUE(store.ok());
  KvStore& kv = **store;
  std::mt19937 rng(123);
  std::vector<std::vector<uint8_t>> written;
  for (SeqId s = 0; s < 4; ++s) {
    ASSERT_TRUE(kv.AddSequence(s).ok());
    ASSERT_TRUE(kv.ReserveAll(s, {64, 64}).ok());
    for (int l = 0; l < 2; ++l) {
      std::vector<uint8_t> bytes(kv.layout().BlockBytes());
      for (auto& b : bytes) b = static_cast<uint8_t>(rng());
      std::memcpy(kv.Data(kv.Table(s, l).blocks[0]), bytes.data(), bytes.size());
      written.push_back(bytes);
    }
  }
  size_t i = 0;
  for (SeqId s = 0; s < 4; ++s)
    for (int l = 0; l < 2; ++l, ++i)
      EXPECT_EQ(0, std::memcmp(kv.Data(kv.Table(s, l).blocks[0]), written[i].data(), written[i].size()));
  // Freed blocks are reused by the next sequence.
  ASSERT_TRUE(kv.Free(2).ok());
  ASSERT_TRUE(kv.AddSequence(9).ok());
  EXPECT_TRUE(kv.ReserveAll(9, {64, 64}).ok());
  EXPECT_EQ(kv.FreeBlocks(), 0);
}

// Writes seeded bytes into every written block of `seq` (as the engine's KV writes would) and
// returns them per (layer, block).
std::map<std::pair<int, int64_t>, std::vector<uint8_t>> Fill(KvStore& kv, SeqId seq, uint32_t seed) {
  std::mt19937 rng(seed);
  std::map<std::pair<int, int64_t>, std::vector<uint8_t>> out;
  for (int l = 0; l < kv.layout().n_layers; ++l) {
    const LayerTable t = kv.Table(seq, l);
    for (int64_t b = 0; b < kv.layout().BlocksFor(t.n_tokens); ++b) {
      std::vector<uint8_t> bytes(kv.layout().BlockBytes());
      for (auto& x : bytes) x = static_cast<uint8_t>(rng());
      std::memcpy(kv.Data(t.blocks[static_cast<size_t>(b)]), bytes.data(), bytes.size());
      out[{l, b}] = std::move(bytes);
    }
  }
  return out;
}

void ExpectBytes(KvStore& kv, SeqId seq, const std::map<std::pair<int, int64_t>, std::vector<uint8_t>>& want) {
  for (const auto& [key, bytes] : want) {
    const LayerTable t = kv.Table(seq, key.first);
    ASSERT_LT(static_cast<size_t>(key.second), t.blocks.size());
    const BlockId slot = t.blocks[static_cast<size_t>(key.second)];
    ASSERT_GE(slot, 0);
    EXPECT_EQ(0, std::memcmp(kv.Data(slot), bytes.data(), bytes.size()))
        << "sequence " << seq << " layer " << key.first << " block " << key.second;
  }
}

TEST(KvStore, SwapRoundTripOverRandomScatterKeepsEveryByte) {
  // Gpu tier with room for a few sequences; others' blocks sit between them (scatter), and a
  // swapped sequence comes back in other slots than it left.
  auto store = KvStore::Create(SmallOptions(40, 64));
  ASSERT_TRUE(store.ok());
  KvStore& kv = **store;
  std::mt19937 rng(7);
  std::map<SeqId, std::map<std::pair<int, int64_t>, std::vector<uint8_t>>> want;
  for (SeqId s = 0; s < 3; ++s) {
    ASSERT_TRUE(kv.AddSequence(s).ok());
    std::vector<int64_t> per_layer = {static_cast<int64_t>(70 + rng() % 200), static_cast<int64_t>(10 + rng() % 150),
                                      static_cast<int64_t>(1 + rng() % 60)};
    ASSERT_TRUE(kv.ReserveAll(s, per_layer).ok());
    for (int l = 0; l < 3; ++l) ASSERT_TRUE(kv.Append(s, l, static_cast<int32_t>(per_layer[static_cast<size_t>(l)])).ok());
    want[s] = Fill(kv, s, 100 + static_cast<uint32_t>(s));
  }
  const int64_t free_before = kv.FreeBlocks();
  StatusOr<TicketId> off = kv.Offload(1, /*release_gpu=*/true);
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_FALSE(kv.Resident(1));
  EXPECT_GT(kv.FreeBlocks(), free_before);
  ASSERT_TRUE(kv.HostWait(*off).ok());
  KvStoreStats st = kv.Stats();
  EXPECT_EQ(st.swapped_sequences, 1);
  const int64_t host_only = st.host.by_state[static_cast<int>(BlockState::kHostOnly)];
  EXPECT_EQ(host_only, static_cast<int64_t>(want[1].size())) << "every written block of sequence 1";
  EXPECT_EQ(kv.HostBlocksToOffload(1), 0);
  EXPECT_EQ(st.transfers.bytes[static_cast<int>(CopyDir::kD2H)],
            host_only * static_cast<int64_t>(kv.layout().BlockBytes()));
  EXPECT_EQ(kv.ReserveAll(1, {1, 1, 1}).code(), StatusCode::kFailedPrecondition);
  // Another sequence takes the freed slots and overwrites them; the unmapped host copy stays.
  ASSERT_TRUE(kv.AddSequence(9).ok());
  ASSERT_TRUE(kv.ReserveAll(9, {128, 128, 128}).ok());
  for (int l = 0; l < 3; ++l) ASSERT_TRUE(kv.Append(9, l, 128).ok());
  want[9] = Fill(kv, 9, 999);
  StatusOr<TicketId> back = kv.Prefetch(1);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_TRUE(kv.BeginCompute(std::vector<SeqId>{1}).ok());
  for (int l = 0; l < 3; ++l) kv.AwaitLayer(l);
  kv.EndCompute(std::vector<SeqId>{1});
  ASSERT_TRUE(kv.HostWait(*back).ok());
  EXPECT_TRUE(kv.Resident(1));
  for (const auto& [s, bytes] : want) ExpectBytes(kv, s, bytes);  // the source and the others unchanged too
  st = kv.Stats();
  EXPECT_EQ(st.transfers.bytes[static_cast<int>(CopyDir::kH2D)], st.transfers.bytes[static_cast<int>(CopyDir::kD2H)]);
  EXPECT_EQ(st.gpu.by_state[static_cast<int>(BlockState::kClean)], host_only);
  EXPECT_EQ(st.prefetch_fetched, 1);
  // A second swap-out copies nothing: every block is clean on the host already.
  StatusOr<TicketId> again = kv.Offload(1, true);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0u);
  EXPECT_EQ(kv.Stats().transfers.bytes[static_cast<int>(CopyDir::kD2H)], st.transfers.bytes[static_cast<int>(CopyDir::kD2H)]);
  ASSERT_TRUE(kv.Prefetch(1).ok());
  ASSERT_TRUE(kv.BeginCompute(std::vector<SeqId>{1}).ok());
  for (int l = 0; l < 3; ++l) kv.AwaitLayer(l);
  kv.EndCompute(std::vector<SeqId>{1});
  ExpectBytes(kv, 1, want[1]);
  // Appending into a clean partial block makes it stale on the host: the next swap-out copies it alone.
  const LayerTable t0 = kv.Table(1, 0);
  ASSERT_TRUE(kv.ReserveAll(1, {t0.n_tokens + 1, kv.Table(1, 1).n_tokens, kv.Table(1, 2).n_tokens}).ok());
  ASSERT_TRUE(kv.Append(1, 0, 1).ok());
  const int64_t before = kv.Stats().transfers.bytes[static_cast<int>(CopyDir::kD2H)];
  StatusOr<TicketId> third = kv.Offload(1, true);
  ASSERT_TRUE(third.ok());
  ASSERT_TRUE(kv.HostWait(*third).ok());
  EXPECT_EQ(kv.Stats().transfers.bytes[static_cast<int>(CopyDir::kD2H)] - before,
            static_cast<int64_t>(kv.layout().BlockBytes()));
  for (SeqId s : {0, 1, 2, 9}) ASSERT_TRUE(kv.Free(s).ok());
  kv.Drain();
  st = kv.Stats();
  EXPECT_EQ(st.gpu.pool.used_blocks, 0);
  EXPECT_EQ(st.host.pool.used_blocks, 0);
  EXPECT_EQ(st.sequences, 0);
}

TEST(KvStore, OffloadAndPrefetchRefuseWhatDoesNotFitAndChangeNothing) {
  auto store = KvStore::Create(SmallOptions(6, 2));
  ASSERT_TRUE(store.ok());
  KvStore& kv = **store;
  ASSERT_TRUE(kv.AddSequence(1).ok());
  ASSERT_TRUE(kv.ReserveAll(1, {128, 64, 0}).ok());
  ASSERT_TRUE(kv.Append(1, 0, 128).ok());
  ASSERT_TRUE(kv.Append(1, 1, 64).ok());
  EXPECT_EQ(kv.Offload(1, true).status().code(), StatusCode::kResourceExhausted) << "3 blocks, 2 host slots";
  EXPECT_TRUE(kv.Resident(1));
  EXPECT_EQ(kv.HostFreeBlocks(), 2);
  ASSERT_TRUE(kv.Free(1).ok());
  ASSERT_TRUE(kv.AddSequence(2).ok());
  ASSERT_TRUE(kv.ReserveAll(2, {64, 64, 0}).ok());
  ASSERT_TRUE(kv.Append(2, 0, 64).ok());
  ASSERT_TRUE(kv.Append(2, 1, 64).ok());
  ASSERT_TRUE(kv.Offload(2, true).ok());
  ASSERT_TRUE(kv.AddSequence(3).ok());
  ASSERT_TRUE(kv.ReserveAll(3, {320, 0, 0}).ok());  // 5 of 6 gpu blocks
  EXPECT_EQ(kv.Prefetch(2).status().code(), StatusCode::kResourceExhausted);
  EXPECT_FALSE(kv.Resident(2));
  EXPECT_EQ(kv.Stats().prefetch_failed, 1);
  EXPECT_EQ(kv.BeginCompute(std::vector<SeqId>{2}).code(), StatusCode::kFailedPrecondition);
}

TEST(KvStore, FreedBlocksArePoisonedWithNan) {
  KvStoreOptions o = SmallOptions(4);
  o.poison_freed = true;
  o.layout.elem_bytes = 4;
  auto store = KvStore::Create(o);
  ASSERT_TRUE(store.ok());
  KvStore& kv = **store;
  ASSERT_TRUE(kv.AddSequence(1).ok());
  ASSERT_TRUE(kv.Reserve(1, 0, 64).ok());
  const BlockId b = kv.Table(1, 0).blocks[0];
  std::memset(kv.Data(b), 0, kv.layout().BlockBytes());
  ASSERT_TRUE(kv.Free(1).ok());
  const float* f = reinterpret_cast<const float*>(kv.Data(b));
  for (size_t i = 0; i < kv.layout().BlockBytes() / 4; ++i) ASSERT_TRUE(std::isnan(f[i])) << i;
}

// Threads swap their own sequences in and out and check every byte each time, while a reader
// thread polls Stats(); at the end both tiers are back to empty.
TEST(KvStore, ConcurrentSwapsKeepEverySequencesBytes) {
  auto store = KvStore::Create(SmallOptions(64, 128));
  ASSERT_TRUE(store.ok());
  KvStore& kv = **store;
  std::atomic<bool> stop{false};
  std::thread stats([&] {
    while (!stop) {
      const KvStoreStats st = kv.Stats();
      ASSERT_LE(st.gpu.pool.used_blocks, 64);
      ASSERT_LE(st.host.pool.used_blocks, 128);
    }
  });
  std::mutex engine;  // the store's engine-thread calls are serialised, as the engine does
  std::vector<std::thread> workers;
  std::atomic<int> failures{0};
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&, w] {
      std::mt19937 rng(static_cast<uint32_t>(w));
      const SeqId seq = w;
      std::map<std::pair<int, int64_t>, std::vector<uint8_t>> want;
      {
        std::lock_guard<std::mutex> l(engine);
        if (!kv.AddSequence(seq).ok() || !kv.ReserveAll(seq, {128, 64, 64}).ok()) ++failures;
        for (int l2 = 0; l2 < 3; ++l2) (void)kv.Append(seq, l2, l2 == 0 ? 128 : 64);
        // The writes go inside the compute protocol, as the engine's do: the slots may have just
        // been released by another sequence's offload whose copy still reads them.
        if (!kv.BeginCompute(std::vector<SeqId>{seq}).ok()) ++failures;
        want = Fill(kv, seq, 50 + static_cast<uint32_t>(w));
        kv.EndCompute(std::vector<SeqId>{seq});
      }
      for (int round = 0; round < 30; ++round) {
        std::lock_guard<std::mutex> l(engine);
        if (rng() % 2 == 0) {
          if (kv.Resident(seq) && !kv.Offload(seq, true).ok()) ++failures;
        } else if (!kv.Resident(seq)) {
          if (!kv.Prefetch(seq).ok()) continue;  // the others may hold the room now
          if (!kv.BeginCompute(std::vector<SeqId>{seq}).ok()) ++failures;
          for (int l2 = 0; l2 < 3; ++l2) kv.AwaitLayer(l2);
          kv.EndCompute(std::vector<SeqId>{seq});
          for (const auto& [key, bytes] : want) {
            const BlockId slot = kv.Table(seq, key.first).blocks[static_cast<size_t>(key.second)];
            if (slot < 0 || std::memcmp(kv.Data(slot), bytes.data(), bytes.size()) != 0) ++failures;
          }
        }
      }
      std::lock_guard<std::mutex> l(engine);
      if (!kv.Free(seq).ok()) ++failures;
    });
  }
  for (auto& t : workers) t.join();
  stop = true;
  stats.join();
  kv.Drain();
  EXPECT_EQ(failures.load(), 0);
  const KvStoreStats st = kv.Stats();
  EXPECT_EQ(st.gpu.pool.used_blocks, 0);
  EXPECT_EQ(st.host.pool.used_blocks, 0);
}

}  // namespace
}  // namespace slim::kv
