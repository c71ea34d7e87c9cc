// BlockPool: fixed arena, LIFO free list, reference counts.
#include "kvstore/block_pool.h"

#include <cstdlib>
#include <limits>
#include <string>

namespace slim::kv {

const char* TierName(Tier t) { return t == Tier::kGpu ? "gpu" : "host"; }

BlockPool::BlockPool(Tier tier, uint8_t* base, int64_t n_blocks, size_t block_bytes, bool owns)
    : tier_(tier), base_(base), n_blocks_(n_blocks), block_bytes_(block_bytes), owns_(owns) {
  free_.reserve(static_cast<size_t>(n_blocks));
  for (int64_t i = n_blocks - 1; i >= 0; --i) free_.push_back(static_cast<BlockId>(i));
  refs_.assign(static_cast<size_t>(n_blocks), 0);
}

BlockPool::~BlockPool() {
  if (owns_) std::free(base_);
}

StatusOr<std::unique_ptr<BlockPool>> BlockPool::CreateHost(int64_t n_blocks, size_t block_bytes) {
  if (n_blocks <= 0 || n_blocks > std::numeric_limits<BlockId>::max() || block_bytes == 0) {
    return InvalidArgumentError("KV block pool: need n_blocks in [1, 2^31) and block_bytes > 0, got " +
                                std::to_string(n_blocks) + " x " + std::to_string(block_bytes));
  }
  const size_t aligned = (block_bytes + 63) / 64 * 64;
  if (static_cast<size_t>(n_blocks) > std::numeric_limits<size_t>::max() / aligned) {
    return InvalidArgumentError("KV block pool: arena size overflows");
  }
  void* p = std::aligned_alloc(64, static_cast<size_t>(n_blocks) * aligned);
  if (p == nullptr) {
    return ResourceExhaustedError("KV block pool: cannot allocate " +
                                  std::to_string(static_cast<size_t>(n_blocks) * aligned) +
                                  " bytes of host memory");
  }
  return std::unique_ptr<BlockPool>(
      new BlockPool(Tier::kHost, static_cast<uint8_t*>(p), n_blocks, aligned, true));
}

StatusOr<std::unique_ptr<BlockPool>> BlockPool::CreateOver(Tier tier, void* arena, int64_t n_blocks,
                                                           size_t block_bytes) {
  if (arena == nullptr || n_blocks <= 0 || n_blocks > std::numeric_limits<BlockId>::max() ||
      block_bytes == 0) {
    return InvalidArgumentError("KV block pool: bad arena");
  }
  return std::unique_ptr<BlockPool>(
      new BlockPool(tier, static_cast<uint8_t*>(arena), n_blocks, block_bytes, false));
}

Status BlockPool::Allocate(int64_t n, std::vector<BlockId>* out) {
  if (n < 0) return InvalidArgumentError("KV block pool: negative block count");
  if (n > free_blocks()) {
    return ResourceExhaustedError("KV " + std::string(TierName(tier_)) + " tier: need " +
                                  std::to_string(n) + " blocks, " + std::to_string(free_blocks()) +
                                  " free of " + std::to_string(n_blocks_));
  }
  for (int64_t i = 0; i < n; ++i) {
    BlockId id = free_.back();
    free_.pop_back();
    refs_[static_cast<size_t>(id)] = 1;
    out->push_back(id);
  }
  allocations_ += n;
  return OkStatus();
}

void BlockPool::AddRef(BlockId id) { ++refs_[static_cast<size_t>(id)]; }

void BlockPool::Release(BlockId id) {
  int32_t& r = refs_[static_cast<size_t>(id)];
  if (r <= 0) return;  // double release: ignored rather than corrupting the free list
  if (--r == 0) {
    free_.push_back(id);
    ++releases_;
  }
}

BlockPoolStats BlockPool::Stats() const {
  BlockPoolStats s;
  s.total_blocks = n_blocks_;
  s.free_blocks = free_blocks();
  s.used_blocks = n_blocks_ - s.free_blocks;
  s.block_bytes = block_bytes_;
  s.allocations = allocations_;
  s.releases = releases_;
  return s;
}

}  // namespace slim::kv
