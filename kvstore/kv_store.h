// The KV store: owner of every KV byte. Two tiers (gpu: one device arena; host: pinned memory,
// added in the background in chunks), per-(sequence, layer) block tables with a state per
// block, the copy engine that moves blocks between tiers (kvstore/copy_engine.h), the fences
// that keep copies and compute apart, and stats for metrics. The engine asks for blocks and
// reads the gpu tier through View() / Data(); it never allocates KV memory or computes tier
// addresses. Memory and copies come from a TierMemory the backend implements.
//
// Block layout (one (sequence, layer), `block_tokens` tokens):
//   K: [n_kv_heads][block_tokens][head_dim]  then  V: [n_kv_heads][block_tokens][head_dim]
//
// Block states: writing (on the gpu tier, not full or being written), gpu-only (full), clean
// (the same bytes on both tiers), host-only (swapped out), fetching (host -> gpu in flight),
// offloading (gpu -> host in flight). A full block is copied to the host at most once: it
// stays clean (its host copy kept) after a prefetch, so a second swap-out copies only the
// blocks written since.
//
// Compute protocol (engine thread): BeginCompute(seqs) before a forward pass over those
// sequences, AwaitLayer(l) before layer l touches their KV, EndCompute(seqs) after the pass is
// queued. Between them the compute stream waits (device-side) for prefetches into their slots
// and for copies still reading slots they were just given.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/core/status.h"
#include "kvstore/block_pool.h"
#include "kvstore/copy_engine.h"
#include "kvstore/tier_memory.h"

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

enum class BlockState : uint8_t { kFree, kWriting, kGpuOnly, kClean, kHostOnly, kFetching, kOffloading };
inline constexpr int kBlockStates = 7;
const char* BlockStateName(BlockState s);

#ifdef NDEBUG
inline constexpr bool kPoisonFreedDefault = false;
#else
inline constexpr bool kPoisonFreedDefault = true;
#endif

struct KvStoreOptions {
  KvLayout layout;
  TierMemory* memory = nullptr;  // required; outlives the store
  int64_t gpu_blocks = 0;        // the gpu tier, >= 1
  int64_t host_blocks = 0;       // the host tier; 0 = none (no swapping)
  // > 0: the host tier is allocated in chunks of this many blocks by a background thread, so
  // creating the store does not wait for pinning; 0: all of it before Create returns.
  int64_t host_chunk_blocks = 0;
  // Freed blocks are filled with 0xFF bytes (NaN in f32, f16 and bf16) so a stale read shows.
  bool poison_freed = kPoisonFreedDefault;
};

struct LayerTable {
  std::vector<BlockId> blocks;  // gpu slot of each block, -1 while it has none: the image the kernels read
  std::vector<BlockId> host;    // host slot of each block, -1: none
  std::vector<BlockState> state;
  std::vector<TicketId> copy;   // the copy moving each block now (fetching, offloading), 0: none
  int32_t n_tokens = 0;         // tokens written at this layer
  int64_t capacity() const { return static_cast<int64_t>(blocks.size()); }
};

// The gpu tier as kernels address it: block b at base + b * block_bytes.
struct GpuView {
  uint8_t* base = nullptr;
  int64_t n_blocks = 0;
  size_t block_bytes = 0;
  size_t head_bytes = 0;
};

struct TierStats {
  BlockPoolStats pool;            // slots allocated so far (the host tier grows while pinning)
  int64_t capacity_blocks = 0;    // configured size
  size_t capacity_bytes = 0;
  size_t bytes_in_use = 0;        // used slots x block bytes
  int64_t by_state[kBlockStates] = {};  // blocks holding a slot of this tier, by state (kFree: free slots)
};

struct KvStoreStats {
  TierStats gpu, host;
  int64_t sequences = 0;
  int64_t swapped_sequences = 0;  // with blocks off the gpu tier
  int64_t tokens_stored = 0;      // sum over (sequence, layer) of n_tokens
  TransferStats transfers;
  int64_t prefetch_fetched = 0;   // prefetches that copied blocks (transfers splits them on time / late)
  int64_t prefetch_hit = 0;       // prefetches with nothing to copy (every block resident)
  int64_t prefetch_failed = 0;    // refused: no room on the gpu tier
  // Decode KV selections (RecordSelection): how many, how many kept their set by the gamma
  // rule (no prefetch at all), and the overlap of each choice with the set in force.
  int64_t selections = 0;
  int64_t selections_kept = 0;
  HistogramData selection_overlap;
  int64_t evictions = 0;          // gpu slots released by offloads
  std::string host_error;         // why the host tier stopped growing, if it did
};

// Thread-safety: every public method may be called from any thread (one mutex); the compute
// protocol and Reserve/Append/Free/Offload/Prefetch are called by the engine thread. Pointers
// from Data() / TablePtr() stay valid until the block is freed or the table regrows.
class KvStore {
 public:
  static StatusOr<std::unique_ptr<KvStore>> Create(const KvStoreOptions& options);
  ~KvStore();

  const KvLayout& layout() const { return layout_; }

  // AlreadyExists when `seq` is present.
  Status AddSequence(SeqId seq);
  bool HasSequence(SeqId seq) const;
  // Grows the table of (seq, layer) to hold `tokens` tokens. All or nothing: ResourceExhausted
  // leaves the table as it was. FailedPrecondition while the sequence is swapped out.
  Status Reserve(SeqId seq, int layer, int64_t tokens);
  // Reserves `tokens_per_layer[l]` at every layer, all or nothing across layers.
  Status ReserveAll(SeqId seq, const std::vector<int64_t>& tokens_per_layer);
  // Marks `n` more tokens written at (seq, layer); they must fit the reserved capacity.
  Status Append(SeqId seq, int layer, int32_t n);
  // Frees every block of `seq` on both tiers (copies in flight finish first where a new owner
  // of a slot needs it); NotFound when absent.
  Status Free(SeqId seq);

  // Gpu blocks that ReserveAll(seq, tokens_per_layer) would take now (seq may be new).
  int64_t BlocksNeeded(SeqId seq, const std::vector<int64_t>& tokens_per_layer) const;
  int64_t FreeBlocks() const;      // gpu tier
  int64_t TotalBlocks() const;     // gpu tier
  int64_t HostFreeBlocks() const;  // host tier slots free now (grows while pinning)
  int64_t HostCapacityBlocks() const;

  // Tier moves. Offload copies every written block of `seq` that is not clean to the host tier
  // (after its KV writes, device-side); with release_gpu its gpu slots are freed (the sequence
  // is then swapped out) and the copy's ticket reads them before any new owner writes.
  // ResourceExhausted (nothing changed) when the host tier lacks the slots.
  StatusOr<TicketId> Offload(SeqId seq, bool release_gpu);
  // Gives every block of `seq` without a gpu slot one and copies it back, one batched copy per
  // layer; compute on the sequence waits per layer (AwaitLayer). ResourceExhausted (nothing
  // changed) when the gpu tier lacks the slots. Ticket 0 when nothing had to move.
  StatusOr<TicketId> Prefetch(SeqId seq);
  // Gpu blocks a Prefetch(seq) would take / host slots an Offload(seq) would take.
  int64_t BlocksToPrefetch(SeqId seq) const;
  int64_t HostBlocksToOffload(SeqId seq) const;
  bool Resident(SeqId seq) const;  // not swapped out (with SetResidency some blocks may have no gpu slot)
  int64_t GpuBlocks(SeqId seq) const;  // gpu slots the sequence holds now (0: absent)

  // Decode-time residency (the asynchronous KV manager): per layer, which of the blocks
  // [0, limit) keep a gpu slot; blocks from `limit` on are never touched.
  struct Residency {
    int layer = 0;
    int64_t limit = 0;
    std::span<const int32_t> keep;  // increasing block indices below limit
  };
  struct ResidencyChange {
    TicketId ticket = 0;   // the copy of the entering blocks; 0: none had to move
    int64_t fetched = 0;   // blocks given a gpu slot and copied in
    int64_t released = 0;  // gpu slots given up (their blocks are clean: the host has them)
    int64_t deferred = 0;  // outside `keep` but not clean yet (write-through in flight): kept for now
  };
  // Write-through: copies every full block below `limit` of the listed layers that has no host
  // copy to the host tier (after its KV writes, device-side), keeping the gpu slots. `keep` is
  // not read. ResourceExhausted (nothing changed) when the host tier lacks the slots.
  StatusOr<TicketId> WriteThrough(SeqId seq, std::span<const Residency> layers);
  // Gives each kept block without a gpu slot one and copies it in from the host tier (one
  // batched copy per layer, issued in the order of `layers`: list the layers that need their
  // blocks first first), then releases the gpu slots of the other clean blocks below the
  // limit, fenced after the compute queued so far. Inside a compute pass the current pass waits
  // for the layers it has not reached (AwaitLayer) and the next pass for every layer; outside
  // one, the next pass waits. ResourceExhausted when the gpu tier lacks the slots even after the
  // releases (the releases stay; nothing is fetched).
  // With release_later, the releases are left to a later ReleaseOutside with the same layers
  // (unless the gpu tier is short: then they come first, as always), so that the caller can
  // queue more compute before that bookkeeping; `released` and `deferred` are then 0.
  StatusOr<ResidencyChange> SetResidency(SeqId seq, std::span<const Residency> layers, bool release_later = false);
  // The releases of SetResidency: the gpu slots of the clean blocks below each limit outside
  // `keep`, fenced after the compute queued so far. Sets *released and *deferred (blocks not
  // yet clean). NotFound / FailedPrecondition as SetResidency.
  Status ReleaseOutside(SeqId seq, std::span<const Residency> layers, int64_t* released, int64_t* deferred);
  // Counts a decode KV selection into Stats (overlap with the set in force, kept by gamma).
  void RecordSelection(double overlap, bool kept);
  Status HostWait(TicketId ticket);  // for tests and shutdown
  bool Done(TicketId ticket) const;  // the copy finished (0: nothing was copied)
  void Drain() const;                // waits for every copy in flight

  // The compute protocol (see the file comment).
  Status BeginCompute(std::span<const SeqId> seqs);
  void AwaitLayer(int layer);
  void EndCompute(std::span<const SeqId> seqs);

  // Tokens written at (seq, layer); 0 when absent. No copy: for per-step bookkeeping.
  int32_t Tokens(SeqId seq, int layer) const;
  // Snapshot of one table (copy: safe against concurrent growth).
  LayerTable Table(SeqId seq, int layer) const;
  // Direct reference for the engine thread's hot path; valid until the next Reserve/Free.
  const LayerTable* TablePtr(SeqId seq, int layer) const;
  // Gpu-tier slot memory (the kernels' view of it: View()).
  uint8_t* Data(BlockId id) const { return gpu_.Data(id); }
  uint8_t* HostData(BlockId id) const;
  GpuView View() const;
  KvStoreStats Stats() const;

 private:
  struct Seq {
    std::vector<LayerTable> layers;
    Fence last_compute = 0;
    TicketId last_h2d = 0, last_d2h = 0;   // latest copies issued for it
    std::vector<TicketId> prefetch;        // the next compute pass waits per layer for these
    std::vector<TicketId> next_prefetch;   // issued inside a pass, for the pass after it
    int64_t gpu_blocks = 0;                // gpu slots held
    SlotStamp wait;                        // copies still touching slots it was given
    bool resident = true;
    Status error;                          // a failed copy: the sequence is lost
  };
  explicit KvStore(const KvStoreOptions& o);
  void PinHost(int64_t chunk_blocks);
  void OnCopyDone(TicketId ticket, const Status& st);
  int64_t BlocksNeededLocked(SeqId seq, const std::vector<int64_t>& tokens_per_layer) const;
  SlotStamp StampOf(const Seq& s) const;
  void ReleaseGpu(BlockId id, const SlotStamp& stamp, bool poison);
  void ReleaseHost(BlockId id, const SlotStamp& stamp, bool poison);
  // Registers a submitted copy: the blocks it moves (layer, index) and its sequence.
  void TrackCopy(SeqId id, Seq& s, TicketId ticket, const std::vector<std::pair<size_t, size_t>>& blocks);
  // Copies the written full blocks `pick(layer, block)` accepts that have no host copy to the
  // host tier (Offload, WriteThrough).
  template <typename Pick>
  StatusOr<TicketId> OffloadLocked(SeqId id, Seq& s, bool full_only, Pick pick);
  int64_t ReleaseIfClean(Seq& s, LayerTable& t, size_t i, const SlotStamp& stamp);
  // The sequence, resident and without a copy error; NotFound / its error / FailedPrecondition.
  StatusOr<Seq*> ResidentSeqLocked(SeqId seq);
  void ReleaseOutsideLocked(Seq& s, std::span<const Residency> layers, const SlotStamp& stamp, int64_t* released,
                            int64_t* deferred);

  KvLayout layout_;
  TierMemory* memory_;
  bool poison_;
  int64_t host_capacity_;
  mutable std::mutex mu_;
  BlockPool gpu_;                      // guarded by mu_
  BlockPool host_;                     // guarded by mu_
  void* gpu_arena_ = nullptr;
  std::vector<void*> host_chunks_;     // guarded by mu_
  std::map<SeqId, Seq> seqs_;          // guarded by mu_
  // Guarded by mu_: in-flight tickets -> their sequence and the (layer, block index) pairs they
  // copy, so that a finished copy updates its own blocks' states rather than scanning every table.
  struct TicketBlocks {
    SeqId seq = 0;
    std::vector<std::pair<size_t, size_t>> blocks;
  };
  std::map<TicketId, TicketBlocks> ticket_seq_;
  int64_t prefetch_fetched_ = 0, prefetch_hit_ = 0, prefetch_failed_ = 0, evictions_ = 0;
  int64_t selections_ = 0, selections_kept_ = 0;
  HistogramData selection_overlap_;    // guarded by mu_
  std::string host_error_;             // guarded by mu_
  std::vector<TicketId> awaiting_;     // engine thread: prefetches of the current pass
  bool in_compute_ = false;            // engine thread: between BeginCompute and EndCompute
  std::atomic<bool> stop_pin_{false};
  std::thread pin_thread_;
  std::unique_ptr<CopyEngine> copy_;
};

}  // namespace slim::kv
