// KvStore and BlockPool: allocation, all-or-nothing reservation, free, counts, data integrity.
#include "kvstore/kv_store.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace slim::kv {
namespace {

KvStoreOptions SmallOptions(int64_t blocks) {
  KvStoreOptions o;
  o.layout.n_layers = 3;
  o.layout.n_kv_heads = 2;
  o.layout.head_dim = 8;
  o.layout.block_tokens = 64;
  o.host_blocks = blocks;
  return o;
}

TEST(BlockPool, AllocateReleaseAndRefCounts) {
  auto pool = BlockPool::CreateHost(4, 100);
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  std::vector<BlockId> ids;
  ASSERT_TRUE((*pool)->Allocate(3, &ids).ok());
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_EQ((*pool)->free_blocks(), 1);
  Status s = (*pool)->Allocate(2, &ids);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(ids.size(), 3u) << "a failed allocation takes nothing";
  (*pool)->AddRef(ids[0]);
  (*pool)->Release(ids[0]);
  EXPECT_EQ((*pool)->free_blocks(), 1);
  (*pool)->Release(ids[0]);
  EXPECT_EQ((*pool)->free_blocks(), 2);
  (*pool)->Release(ids[0]);  // double release is ignored
  EXPECT_EQ((*pool)->free_blocks(), 2);
  EXPECT_EQ((*pool)->block_bytes() % 64, 0u);
  auto st = (*pool)->Stats();
  EXPECT_EQ(st.used_blocks, 2);
  EXPECT_EQ(st.allocations, 3);
  EXPECT_EQ(st.releases, 1);
}

TEST(BlockPool, RejectsBadSizes) {
  EXPECT_FALSE(BlockPool::CreateHost(0, 100).ok());
  EXPECT_FALSE(BlockPool::CreateHost(4, 0).ok());
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
  EXPECT_EQ(st.host.used_blocks, 7);
  EXPECT_EQ(st.bytes_in_use, 7 * kv.layout().BlockBytes());
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

}  // namespace
}  // namespace slim::kv
