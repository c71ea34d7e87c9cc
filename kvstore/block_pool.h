// Paged KV block allocator for one memory tier: a fixed arena cut into equal blocks, a free
// list, reference counts and counts for metrics. Knows nothing of sequences, layers or streams.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/core/status.h"

namespace slim::kv {

using BlockId = int32_t;

enum class Tier { kGpu, kHost };
const char* TierName(Tier t);

struct BlockPoolStats {
  int64_t total_blocks = 0;
  int64_t used_blocks = 0;
  int64_t free_blocks = 0;
  size_t block_bytes = 0;
  int64_t allocations = 0;  // blocks handed out since creation
  int64_t releases = 0;     // blocks returned since creation
};

// Thread-safety: not thread-safe; the owning KvStore serialises access.
class BlockPool {
 public:
  // Host arena of `n_blocks` x `block_bytes` bytes (64-byte aligned). On the CUDA backend the
  // arena comes from the caller (device memory) through the second factory.
  static StatusOr<std::unique_ptr<BlockPool>> CreateHost(int64_t n_blocks, size_t block_bytes);
  static StatusOr<std::unique_ptr<BlockPool>> CreateOver(Tier tier, void* arena, int64_t n_blocks,
                                                         size_t block_bytes);
  ~BlockPool();

  // Takes `n` blocks (ref count 1) or ResourceExhausted without taking any.
  Status Allocate(int64_t n, std::vector<BlockId>* out);
  void AddRef(BlockId id);
  // Drops one reference; the block returns to the free list at zero.
  void Release(BlockId id);

  uint8_t* Data(BlockId id) const { return base_ + static_cast<size_t>(id) * block_bytes_; }
  int32_t RefCount(BlockId id) const { return refs_[static_cast<size_t>(id)]; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t total_blocks() const { return n_blocks_; }
  size_t block_bytes() const { return block_bytes_; }
  Tier tier() const { return tier_; }
  BlockPoolStats Stats() const;

 private:
  BlockPool(Tier tier, uint8_t* base, int64_t n_blocks, size_t block_bytes, bool owns);

  Tier tier_;
  uint8_t* base_;
  int64_t n_blocks_;
  size_t block_bytes_;
  bool owns_;
  std::vector<BlockId> free_;    // stack; lowest ids handed out first
  std::vector<int32_t> refs_;
  int64_t allocations_ = 0;
  int64_t releases_ = 0;
};

}  // namespace slim::kv
