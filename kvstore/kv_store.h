// The KV store: per-(sequence, layer) block tables over the block pools, capacity reservation,
// and stats for metrics. This tier is host memory only; the engine writes and reads
// block memory through Data(), the store never interprets it.
//
// Block layout (one (sequence, layer), `block_tokens` tokens):
//   K: [n_kv_heads][block_tokens][head_dim]  then  V: [n_kv_heads][block_tokens][head_dim]
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/core/status.h"
#include "kvstore/block_pool.h"

namespace slim::kv {

using SeqId = int64_t;

struct KvLayout {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_tokens = 64;
  size_t elem_bytes = 4;  // fp32 on the CPU backend, 2 for bf16

  size_t HeadBytes() const { return static_cast<size_t>(block_tokens) * head_dim * elem_bytes; }
  size_t BlockBytes() const { return 2 * static_cast<size_t>(n_kv_heads) * HeadBytes(); }
  // Bytes of K and V for one token of one layer.
  size_t TokenBytes() const { return 2 * static_cast<size_t>(n_kv_heads) * head_dim * elem_bytes; }
  int64_t BlocksFor(int64_t tokens) const { return (tokens + block_tokens - 1) / block_tokens; }
};

struct KvStoreOptions {
  KvLayout layout;
  int64_t host_blocks = 0;  // capacity of the first tier
  // When set, the first tier is this caller-owned arena (device memory on the CUDA backend,
  // host_blocks x BlockBytes() bytes, outliving the store) and is reported as the gpu tier;
  // otherwise the store allocates host memory itself.
  void* arena = nullptr;
};

struct LayerTable {
  std::vector<BlockId> blocks;
  int32_t n_tokens = 0;  // tokens written at this layer
  int64_t capacity() const { return static_cast<int64_t>(blocks.size()); }
};

struct KvStoreStats {
  BlockPoolStats host;
  int64_t sequences = 0;
  int64_t tokens_stored = 0;   // sum over (sequence, layer) of n_tokens
  size_t bytes_in_use = 0;     // used blocks x block bytes
};

// Thread-safety: every public method takes the store's mutex, so Stats() may be called from a
// metrics thread while the engine thread allocates. Pointers from Data() stay valid until the
// block is freed; only the engine thread writes through them.
class KvStore {
 public:
  static StatusOr<std::unique_ptr<KvStore>> Create(const KvStoreOptions& options);

  const KvLayout& layout() const { return layout_; }

  // AlreadyExists when `seq` is present.
  Status AddSequence(SeqId seq);
  bool HasSequence(SeqId seq) const;
  // Grows the table of (seq, layer) to hold `tokens` tokens. All or nothing: ResourceExhausted
  // leaves the table as it was.
  Status Reserve(SeqId seq, int layer, int64_t tokens);
  // Reserves `tokens_per_layer[l]` at every layer, all or nothing across layers.
  Status ReserveAll(SeqId seq, const std::vector<int64_t>& tokens_per_layer);
  // Marks `n` more tokens written at (seq, layer); they must fit the reserved capacity.
  Status Append(SeqId seq, int layer, int32_t n);
  // Frees every block of `seq`; NotFound when absent.
  Status Free(SeqId seq);

  // Blocks that ReserveAll(seq, tokens_per_layer) would take now (seq may be new).
  int64_t BlocksNeeded(SeqId seq, const std::vector<int64_t>& tokens_per_layer) const;
  int64_t FreeBlocks() const;

  // Snapshot of one table (copy: safe against concurrent growth).
  LayerTable Table(SeqId seq, int layer) const;
  // Direct reference for the engine thread's hot path; valid until the next Reserve/Free.
  const LayerTable* TablePtr(SeqId seq, int layer) const;
  uint8_t* Data(BlockId id) const { return host_->Data(id); }
  // Blocks in the first tier (ids 0 .. TotalBlocks() - 1).
  int64_t TotalBlocks() const { return host_->total_blocks(); }
  KvStoreStats Stats() const;

 private:
  KvStore(const KvLayout& layout, std::unique_ptr<BlockPool> host);
  int64_t BlocksNeededLocked(SeqId seq, const std::vector<int64_t>& tokens_per_layer) const;

  KvLayout layout_;
  std::unique_ptr<BlockPool> host_;
  mutable std::mutex mu_;
  std::map<SeqId, std::vector<LayerTable>> seqs_;
};

}  // namespace slim::kv
