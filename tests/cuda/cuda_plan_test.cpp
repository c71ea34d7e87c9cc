// Host-side launch planning of the CUDA attention kernels (no device needed, so these run in CI
// wherever the CUDA backend is compiled in): how decode work is split, which shapes each kernel
// takes.
#include <gtest/gtest.h>

#ifdef SLIM_HAVE_CUDA

#include "engine/backend/cuda/decode_attention.h"
#include "engine/backend/cuda/flash_attention.h"

namespace slim::cuda {
namespace {

// Every key of every item lands in exactly one split, and the grid stays within CUDA's limits.
TEST(DecodePlan, BlockKernelSplitsCoverEveryKey) {
  for (int n_sms : {1, 16, 132}) {
    for (int items : {1, 3, 16, 256}) {
      for (int kv_heads : {1, 3, 8}) {
        for (int max_keys : {1, 63, 64, 65, 128, 129, 500, 4096, 32769, 131072, 1 << 20}) {
          const int splits = DecodeSplits(items, kv_heads, max_keys, n_sms, 128, 64);
          const int chunks = DecodeChunksPerSplit(items, kv_heads, max_keys, n_sms, 128);
          ASSERT_GE(chunks, 1);
          ASSERT_GE(splits, 1);
          ASSERT_LE(splits, 65535);
          const int64_t per = int64_t{chunks} * kBlockSplitKeys;
          EXPECT_GE(int64_t{splits} * per, max_keys) << items << " items, " << max_keys << " keys";
          EXPECT_LT(int64_t{splits - 1} * per, max_keys) << "an empty last split for every item";
        }
      }
    }
  }
}

// Short contexts get few chunks per split (parallelism); long ones many, about one wave.
TEST(DecodePlan, ChunksPerSplitGrowWithTheWork) {
  EXPECT_EQ(DecodeChunksPerSplit(1, 8, 1024, 132, 128), 1);
  EXPECT_LE(DecodeChunksPerSplit(1, 8, 4096, 132, 128), 2);
  const int long_ctx = DecodeChunksPerSplit(1, 8, 32768, 132, 128);
  EXPECT_GE(long_ctx, 8);
  for (int hd : {64, 128}) {
    const int splits = DecodeSplits(1, 8, 32768, 132, hd, 64);
    EXPECT_LE(int64_t{splits} * 8, int64_t{DecodeCtasPerSm(hd)} * 132 + 8 * 8) << "about one wave of CTAs";
  }
}

TEST(DecodePlan, OtherShapesUseTheGeneralKernel) {
  EXPECT_TRUE(DecodeUsesBlockKernel(128, 64));
  EXPECT_TRUE(DecodeUsesBlockKernel(64, 64));
  EXPECT_FALSE(DecodeUsesBlockKernel(16, 64));
  EXPECT_FALSE(DecodeUsesBlockKernel(128, 32));
  // The general kernel keeps each split within its shared-memory limit.
  for (int max_keys : {1, 1000, 1025, 70000}) {
    const int splits = DecodeSplits(1, 2, max_keys, 132, 16, 64);
    EXPECT_LE((max_keys + splits - 1) / splits, kMaxSplitKeys) << max_keys;
  }
  EXPECT_TRUE(DecodeSupports(256, 8));
  EXPECT_FALSE(DecodeSupports(96, 4));
  EXPECT_FALSE(DecodeSupports(128, 9));
}

TEST(FlashPlan, SupportedShapes) {
  EXPECT_TRUE(FlashSupports(128, 64));
  EXPECT_TRUE(FlashSupports(64, 64));
  EXPECT_FALSE(FlashSupports(128, 128));
  EXPECT_FALSE(FlashSupports(80, 64));
}

}  // namespace
}  // namespace slim::cuda

#else

TEST(DecodePlan, NeedsTheCudaBackend) { GTEST_SKIP() << "built without the CUDA backend"; }

#endif
