// BlockPool: chunked slots, lowest-first free bitmap, reference counts, release stamps.
#include "kvstore/block_pool.h"

#include <algorithm>
#include <bit>
#include <string>

namespace slim::kv {

const char* TierName(Tier t) { return t == Tier::kGpu ? "gpu" : "host"; }

void BlockPool::AddChunk(uint8_t* base, int64_t n_blocks) {
  const BlockId first = static_cast<BlockId>(refs_.size());
  chunks_.push_back(Chunk{base, first});
  refs_.resize(refs_.size() + static_cast<size_t>(n_blocks), 0);
  stamps_.resize(refs_.size());
  free_bits_.resize((refs_.size() + 63) / 64, 0);
  for (int64_t i = 0; i < n_blocks; ++i) MarkFree(first + static_cast<BlockId>(i));
}

void BlockPool::MarkFree(BlockId id) {
  const size_t w = static_cast<size_t>(id) / 64;
  free_bits_[w] |= uint64_t{1} << (static_cast<size_t>(id) % 64);
  first_free_word_ = std::min(first_free_word_, w);
  ++n_free_;
}

BlockId BlockPool::TakeLowest() {
  size_t w = first_free_word_;
  while (free_bits_[w] == 0) ++w;  // n_free_ > 0: some word below the end has a bit
  first_free_word_ = w;
  const int bit = std::countr_zero(free_bits_[w]);
  free_bits_[w] &= free_bits_[w] - 1;
  --n_free_;
  return static_cast<BlockId>(w * 64 + static_cast<size_t>(bit));
}

uint8_t* BlockPool::Data(BlockId id) const {
  // Chunks are few (one for the gpu tier): find the last chunk starting at or before id.
  size_t c = chunks_.size() - 1;
  while (chunks_[c].first > id) --c;
  return chunks_[c].base + static_cast<size_t>(id - chunks_[c].first) * block_bytes_;
}

Status BlockPool::Allocate(int64_t n, std::vector<BlockId>* out, SlotStamp* stamp) {
  if (n < 0) return InvalidArgumentError("KV block pool: negative block count");
  if (n > free_blocks()) {
    return ResourceExhaustedError("KV " + std::string(TierName(tier_)) + " tier: need " + std::to_string(n) +
                                  " blocks, " + std::to_string(free_blocks()) + " free of " +
                                  std::to_string(total_blocks()));
  }
  for (int64_t i = 0; i < n; ++i) {
    const BlockId id = TakeLowest();
    refs_[static_cast<size_t>(id)] = 1;
    if (stamp != nullptr) {
      const SlotStamp& s = stamps_[static_cast<size_t>(id)];
      stamp->compute = std::max(stamp->compute, s.compute);
      stamp->h2d = std::max(stamp->h2d, s.h2d);
      stamp->d2h = std::max(stamp->d2h, s.d2h);
    }
    out->push_back(id);
  }
  allocations_ += n;
  return OkStatus();
}

void BlockPool::AddRef(BlockId id) { ++refs_[static_cast<size_t>(id)]; }

bool BlockPool::Release(BlockId id, const SlotStamp& stamp) {
  int32_t& r = refs_[static_cast<size_t>(id)];
  if (r <= 0) return false;  // double release: ignored rather than corrupting the free list
  if (--r > 0) return false;
  stamps_[static_cast<size_t>(id)] = stamp;
  MarkFree(id);
  ++releases_;
  return true;
}

BlockPoolStats BlockPool::Stats() const {
  BlockPoolStats s;
  s.total_blocks = total_blocks();
  s.free_blocks = free_blocks();
  s.used_blocks = s.total_blocks - s.free_blocks;
  s.block_bytes = block_bytes_;
  s.allocations = allocations_;
  s.releases = releases_;
  return s;
}

}  // namespace slim::kv
