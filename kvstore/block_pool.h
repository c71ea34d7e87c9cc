// Slots of one memory tier: arenas (chunks) cut into equal blocks, a free bitmap handing out the
// lowest ids first (so a sequence's blocks tend to lie side by side and its copies merge into
// few long ranges), reference counts, and per slot the last users a new owner must wait for.
// Memory comes from the caller (KvStore, through TierMemory); the pool never allocates or copies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/core/status.h"
#include "kvstore/tier_memory.h"

namespace slim::kv {

using BlockId = int32_t;
using TicketId = uint64_t;  // a copy job (kvstore/copy_engine.h); 0 = none

enum class Tier { kGpu, kHost };
const char* TierName(Tier t);

// Who touched a slot last, stamped when it is released: a new owner's copies and compute wait
// for these. One compute fence serves as both the last-write and the last-read event, since KV
// writes and attention reads run in order on one compute stream.
struct SlotStamp {
  Fence compute = 0;  // last compute pass over the slot
  TicketId h2d = 0;   // last host-to-device copy touching it
  TicketId d2h = 0;   // last device-to-host copy touching it
};

struct BlockPoolStats {
  int64_t total_blocks = 0;
  int64_t used_blocks = 0;
  int64_t free_blocks = 0;
  size_t block_bytes = 0;
  int64_t allocations = 0;  // slots handed out since creation
  int64_t releases = 0;     // slots returned since creation
};

// Thread-safety: not thread-safe; the owning KvStore serialises access.
class BlockPool {
 public:
  BlockPool(Tier tier, size_t block_bytes) : tier_(tier), block_bytes_(block_bytes) {}

  // Adds `n_blocks` slots over `base` (n_blocks x block_bytes bytes, owned by the caller).
  void AddChunk(uint8_t* base, int64_t n_blocks);
  // Takes `n` slots (ref count 1) or ResourceExhausted without taking any. `*stamp` (may be
  // null) becomes the element-wise max of the taken slots' stamps.
  Status Allocate(int64_t n, std::vector<BlockId>* out, SlotStamp* stamp = nullptr);
  void AddRef(BlockId id);
  // Drops one reference; at zero the slot returns to the free list carrying `stamp`.
  // Returns whether it was freed.
  bool Release(BlockId id, const SlotStamp& stamp);

  uint8_t* Data(BlockId id) const;
  int32_t RefCount(BlockId id) const { return refs_[static_cast<size_t>(id)]; }
  const SlotStamp& Stamp(BlockId id) const { return stamps_[static_cast<size_t>(id)]; }
  int64_t free_blocks() const { return n_free_; }
  int64_t total_blocks() const { return static_cast<int64_t>(refs_.size()); }
  size_t block_bytes() const { return block_bytes_; }
  Tier tier() const { return tier_; }
  // Base of the first chunk (the gpu tier has exactly one).
  uint8_t* base() const { return chunks_.empty() ? nullptr : chunks_[0].base; }
  BlockPoolStats Stats() const;

 private:
  struct Chunk {
    uint8_t* base;
    BlockId first;
  };
  void MarkFree(BlockId id);
  BlockId TakeLowest();  // n_free_ > 0
  Tier tier_;
  size_t block_bytes_;
  std::vector<Chunk> chunks_;
  // Free slots, one bit each (set = free); every word below first_free_word_ is all zero. A
  // bitmap, not an ordered set: a decode step under a tiered budget takes and gives back about a
  // thousand slots of a pool of some 500,000, which a std::set did in about 0.2 ms.
  std::vector<uint64_t> free_bits_;
  size_t first_free_word_ = 0;
  int64_t n_free_ = 0;
  std::vector<int32_t> refs_;
  std::vector<SlotStamp> stamps_;
  int64_t allocations_ = 0;
  int64_t releases_ = 0;
};

}  // namespace slim::kv
