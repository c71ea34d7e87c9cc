// KvStore: tiers, per-(sequence, layer) block tables and states, offload/prefetch over the copy
// engine, the compute protocol's waits, and stats.
#include "kvstore/kv_store.h"

#include <algorithm>
#include <string>

namespace slim::kv {
namespace {

// Appends a block copy to a batch, merged into the last range when both ends continue it (a
// batched copy's cost grows with its ranges as well as its bytes).
void AddRange(std::vector<CopyRange>* batch, void* dst, const void* src, size_t bytes) {
  if (!batch->empty()) {
    CopyRange& b = batch->back();
    if (static_cast<uint8_t*>(b.dst) + b.bytes == dst && static_cast<const uint8_t*>(b.src) + b.bytes == src) {
      b.bytes += bytes;
      return;
    }
  }
  batch->push_back(CopyRange{dst, src, bytes});
}

SlotStamp Max(const SlotStamp& a, const SlotStamp& b) {
  return SlotStamp{std::max(a.compute, b.compute), std::max(a.h2d, b.h2d), std::max(a.d2h, b.d2h)};
}

}  // namespace

const char* BlockStateName(BlockState s) {
  switch (s) {
    case BlockState::kFree: return "free";
    case BlockState::kWriting: return "writing";
    case BlockState::kGpuOnly: return "gpu_only";
    case BlockState::kClean: return "clean";
    case BlockState::kHostOnly: return "host_only";
    case BlockState::kFetching: return "fetching";
    case BlockState::kOffloading: return "offloading";
  }
  return "?";
}

KvStore::KvStore(const KvStoreOptions& o)
    : layout_(o.layout),
      memory_(o.memory),
      poison_(o.poison_freed),
      host_capacity_(o.host_blocks),
      gpu_(Tier::kGpu, o.layout.BlockBytes()),
      host_(Tier::kHost, o.layout.BlockBytes()),
      selection_overlap_(HistogramData::WithBounds({0.0, 0.25, 0.5, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0})) {}

StatusOr<std::unique_ptr<KvStore>> KvStore::Create(const KvStoreOptions& o) {
  const KvLayout& l = o.layout;
  if (l.n_layers <= 0 || l.n_kv_heads <= 0 || l.head_dim <= 0 || l.block_tokens <= 0 ||
      (l.elem_bytes != 2 && l.elem_bytes != 4)) {
    return InvalidArgumentError("KV store: invalid layout (layers " + std::to_string(l.n_layers) + ", kv heads " +
                                std::to_string(l.n_kv_heads) + ", head dim " + std::to_string(l.head_dim) + ")");
  }
  if (o.memory == nullptr) return InvalidArgumentError("KV store: no tier memory");
  const int64_t kMaxBlocks = int64_t{1} << 30;
  if (o.gpu_blocks <= 0 || o.gpu_blocks > kMaxBlocks || o.host_blocks < 0 || o.host_blocks > kMaxBlocks ||
      o.host_chunk_blocks < 0) {
    return InvalidArgumentError("KV store: need gpu blocks in [1, 2^30] and host blocks in [0, 2^30], got " +
                                std::to_string(o.gpu_blocks) + " and " + std::to_string(o.host_blocks));
  }
  std::unique_ptr<KvStore> s(new KvStore(o));
  const size_t bb = l.BlockBytes();
  SLIM_ASSIGN_OR_RETURN(s->gpu_arena_, o.memory->AllocGpu(static_cast<size_t>(o.gpu_blocks) * bb));
  s->gpu_.AddChunk(static_cast<uint8_t*>(s->gpu_arena_), o.gpu_blocks);
  if (o.host_blocks > 0 && o.host_chunk_blocks == 0) {
    StatusOr<void*> p = o.memory->AllocHost(static_cast<size_t>(o.host_blocks) * bb);
    if (!p.ok()) return p.status().WithPrefix("KV host tier");
    s->host_chunks_.push_back(*p);
    s->host_.AddChunk(static_cast<uint8_t*>(*p), o.host_blocks);
  }
  KvStore* raw = s.get();
  s->copy_ = std::make_unique<CopyEngine>(o.memory, [raw](TicketId t, const Status& st) { raw->OnCopyDone(t, st); });
  if (o.host_blocks > 0 && o.host_chunk_blocks > 0) {
    s->pin_thread_ = std::thread([raw, n = o.host_chunk_blocks] { raw->PinHost(n); });
  }
  return s;
}

KvStore::~KvStore() {
  stop_pin_ = true;
  if (pin_thread_.joinable()) pin_thread_.join();
  copy_.reset();  // finishes the copies in flight; their callbacks still find the store
  memory_->FreeGpu(gpu_arena_);
  for (void* p : host_chunks_) memory_->FreeHost(p);
}

void KvStore::PinHost(int64_t chunk_blocks) {
  const size_t bb = layout_.BlockBytes();
  for (int64_t done = 0; done < host_capacity_ && !stop_pin_;) {
    const int64_t n = std::min(chunk_blocks, host_capacity_ - done);
    StatusOr<void*> p = memory_->AllocHost(static_cast<size_t>(n) * bb);
    std::lock_guard<std::mutex> l(mu_);
    if (!p.ok()) {
      host_error_ = p.status().message();
      return;
    }
    host_chunks_.push_back(*p);
    host_.AddChunk(static_cast<uint8_t*>(*p), n);
    done += n;
  }
}

Status KvStore::AddSequence(SeqId seq) {
  std::lock_guard<std::mutex> lock(mu_);
  if (seqs_.count(seq)) return Status(StatusCode::kAlreadyExists, "KV store: sequence " + std::to_string(seq) + " exists");
  seqs_[seq].layers.resize(static_cast<size_t>(layout_.n_layers));
  return OkStatus();
}

bool KvStore::HasSequence(SeqId seq) const {
  std::lock_guard<std::mutex> lock(mu_);
  return seqs_.count(seq) != 0;
}

int64_t KvStore::BlocksNeededLocked(SeqId seq, const std::vector<int64_t>& tokens_per_layer) const {
  auto it = seqs_.find(seq);
  int64_t need = 0;
  for (size_t l = 0; l < tokens_per_layer.size(); ++l) {
    const int64_t have = (it == seqs_.end() || l >= it->second.layers.size()) ? 0 : it->second.layers[l].capacity();
    const int64_t want = layout_.BlocksFor(tokens_per_layer[l]);
    if (want > have) need += want - have;
  }
  return need;
}

int64_t KvStore::BlocksNeeded(SeqId seq, const std::vector<int64_t>& tokens_per_layer) const {
  std::lock_guard<std::mutex> lock(mu_);
  return BlocksNeededLocked(seq, tokens_per_layer);
}

int64_t KvStore::FreeBlocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return gpu_.free_blocks();
}

int64_t KvStore::TotalBlocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return gpu_.total_blocks();
}

int64_t KvStore::HostFreeBlocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return host_.free_blocks();
}

int64_t KvStore::HostCapacityBlocks() const { return host_capacity_; }

Status KvStore::Reserve(SeqId seq, int layer, int64_t tokens) {
  if (layer < 0 || layer >= layout_.n_layers) {
    return InvalidArgumentError("KV store: layer " + std::to_string(layer) + " out of range");
  }
  std::vector<int64_t> per_layer(static_cast<size_t>(layout_.n_layers), 0);
  per_layer[static_cast<size_t>(layer)] = tokens;
  return ReserveAll(seq, per_layer);
}

StatusOr<KvStore::Seq*> KvStore::ResidentSeqLocked(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFoundError("KV store: no sequence " + std::to_string(seq));
  Seq& s = it->second;
  if (!s.error.ok()) return s.error;
  if (!s.resident) return FailedPreconditionError("KV store: sequence " + std::to_string(seq) + " is swapped out");
  return &s;
}

Status KvStore::ReserveAll(SeqId seq, const std::vector<int64_t>& tokens_per_layer) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFoundError("KV store: no sequence " + std::to_string(seq));
  Seq& s = it->second;
  if (!s.resident) return FailedPreconditionError("KV store: sequence " + std::to_string(seq) + " is swapped out");
  if (tokens_per_layer.size() > s.layers.size()) return InvalidArgumentError("KV store: more layers than the model has");
  const int64_t need = BlocksNeededLocked(seq, tokens_per_layer);
  if (need > gpu_.free_blocks()) {
    return ResourceExhaustedError("KV store: sequence " + std::to_string(seq) + " needs " + std::to_string(need) +
                                  " more blocks, " + std::to_string(gpu_.free_blocks()) + " free");
  }
  for (size_t l = 0; l < tokens_per_layer.size(); ++l) {
    LayerTable& t = s.layers[l];
    const int64_t want = layout_.BlocksFor(tokens_per_layer[l]);
    if (want <= t.capacity()) continue;
    const int64_t add = want - t.capacity();
    SLIM_RETURN_IF_ERROR(gpu_.Allocate(add, &t.blocks, &s.wait));
    s.gpu_blocks += add;
    t.host.resize(t.blocks.size(), -1);
    t.state.resize(t.blocks.size(), BlockState::kWriting);
    t.copy.resize(t.blocks.size(), 0);
  }
  return OkStatus();
}

Status KvStore::Append(SeqId seq, int layer, int32_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFoundError("KV store: no sequence " + std::to_string(seq));
  if (layer < 0 || layer >= layout_.n_layers) return InvalidArgumentError("KV store: bad layer");
  Seq& s = it->second;
  LayerTable& t = s.layers[static_cast<size_t>(layer)];
  const int64_t bt = layout_.block_tokens;
  if (n < 0 || t.n_tokens + static_cast<int64_t>(n) > t.capacity() * bt) {
    return FailedPreconditionError("KV store: append of " + std::to_string(n) +
                                   " tokens exceeds the reserved capacity at layer " + std::to_string(layer));
  }
  if (n == 0) return OkStatus();
  const int64_t end = t.n_tokens + static_cast<int64_t>(n);
  for (int64_t b = t.n_tokens / bt; b * bt < end; ++b) {
    const size_t i = static_cast<size_t>(b);
    if (t.host[i] >= 0) {  // the host copy of a block written again is stale
      ReleaseHost(t.host[i], StampOf(s), false);
      t.host[i] = -1;
    }
    t.state[i] = (b + 1) * bt <= end ? BlockState::kGpuOnly : BlockState::kWriting;
  }
  t.n_tokens = static_cast<int32_t>(end);
  return OkStatus();
}

SlotStamp KvStore::StampOf(const Seq& s) const { return SlotStamp{s.last_compute, s.last_h2d, s.last_d2h}; }

void KvStore::ReleaseGpu(BlockId id, const SlotStamp& stamp, bool poison) {
  SlotStamp st = stamp;
  if (poison && poison_ && copy_->Done(stamp.h2d) && copy_->Done(stamp.d2h)) {
    memory_->Fill(true, gpu_.Data(id), gpu_.block_bytes(), 0xFF);
    st.compute = memory_->RecordCompute();  // a prefetch into the slot must follow the fill
  }
  gpu_.Release(id, st);
}

void KvStore::ReleaseHost(BlockId id, const SlotStamp& stamp, bool poison) {
  if (poison && poison_ && copy_->Done(stamp.h2d) && copy_->Done(stamp.d2h)) {
    memory_->Fill(false, host_.Data(id), host_.block_bytes(), 0xFF);
  }
  host_.Release(id, stamp);
}

Status KvStore::Free(SeqId seq) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFoundError("KV store: no sequence " + std::to_string(seq));
  const SlotStamp stamp = StampOf(it->second);
  for (LayerTable& t : it->second.layers) {
    for (BlockId b : t.blocks)
      if (b >= 0) ReleaseGpu(b, stamp, true);
    for (BlockId b : t.host)
      if (b >= 0) ReleaseHost(b, stamp, true);
  }
  seqs_.erase(it);
  return OkStatus();
}

int64_t KvStore::HostBlocksToOffload(SeqId seq) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return 0;
  int64_t n = 0;
  for (const LayerTable& t : it->second.layers) {
    const int64_t written = layout_.BlocksFor(t.n_tokens);
    for (int64_t b = 0; b < written; ++b)
      if (t.host[static_cast<size_t>(b)] < 0) ++n;
  }
  return n;
}

void KvStore::TrackCopy(SeqId id, Seq& s, TicketId ticket, const std::vector<std::pair<size_t, size_t>>& blocks) {
  for (const auto& [l, i] : blocks) s.layers[l].copy[i] = ticket;
  ticket_seq_[ticket] = TicketBlocks{id, blocks};
}

template <typename Pick>
StatusOr<TicketId> KvStore::OffloadLocked(SeqId id, Seq& s, bool full_only, Pick pick) {
  auto written = [&](const LayerTable& t) {
    return full_only ? t.n_tokens / layout_.block_tokens : layout_.BlocksFor(t.n_tokens);
  };
  int64_t need = 0;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const LayerTable& t = s.layers[l];
    for (int64_t b = 0, n = written(t); b < n; ++b)
      if (t.host[static_cast<size_t>(b)] < 0 && pick(l, b)) ++need;
  }
  if (need > host_.free_blocks()) {
    return ResourceExhaustedError("KV host tier: sequence " + std::to_string(id) + " needs " + std::to_string(need) +
                                  " blocks, " + std::to_string(host_.free_blocks()) + " free of " +
                                  std::to_string(host_capacity_));
  }
  if (need == 0) return TicketId{0};
  CopyJob job;
  job.dir = CopyDir::kD2H;
  job.after = s.last_compute;
  SlotStamp host_wait;  // h2d copies still reading the host slots taken now
  job.groups.resize(s.layers.size());
  const size_t bb = layout_.BlockBytes();
  std::vector<std::pair<size_t, size_t>> moved;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    LayerTable& t = s.layers[l];
    for (int64_t b = 0, n = written(t); b < n; ++b) {
      const size_t i = static_cast<size_t>(b);
      if (t.host[i] >= 0 || !pick(l, b)) continue;  // clean (or fetching): the host already has these bytes
      std::vector<BlockId> got;
      SLIM_RETURN_IF_ERROR(host_.Allocate(1, &got, &host_wait));
      t.host[i] = got[0];
      t.state[i] = BlockState::kOffloading;
      AddRange(&job.groups[l], host_.Data(got[0]), gpu_.Data(t.blocks[i]), bb);
      moved.emplace_back(l, i);
    }
  }
  // A prefetch of this sequence still landing must finish before its slots are read back.
  job.after_ticket = std::max(host_wait.h2d, s.last_h2d);
  const TicketId ticket = copy_->Submit(std::move(job));
  s.last_d2h = ticket;
  TrackCopy(id, s, ticket, moved);
  return ticket;
}

StatusOr<TicketId> KvStore::Offload(SeqId seq, bool release_gpu) {
  std::lock_guard<std::mutex> lock(mu_);
  SLIM_ASSIGN_OR_RETURN(Seq * found, ResidentSeqLocked(seq));
  Seq& s = *found;
  // Blocks without a gpu slot (SetResidency released them) are clean: they have a host copy.
  SLIM_ASSIGN_OR_RETURN(const TicketId ticket,
                        OffloadLocked(seq, s, /*full_only=*/false, [](size_t, int64_t) { return true; }));
  if (release_gpu) {
    const SlotStamp stamp = StampOf(s);
    for (LayerTable& t : s.layers) {
      const int64_t written = layout_.BlocksFor(t.n_tokens);
      for (size_t i = 0; i < t.blocks.size(); ++i) {
        if (t.blocks[i] < 0) continue;
        ReleaseGpu(t.blocks[i], stamp, false);
        ++evictions_;
        t.blocks[i] = -1;
      }
      // Reserved blocks that hold no token yet are dropped; a later ReserveAll regrows them.
      t.blocks.resize(static_cast<size_t>(written));
      t.host.resize(static_cast<size_t>(written));
      t.state.resize(static_cast<size_t>(written));
      t.copy.resize(static_cast<size_t>(written));
      for (BlockState& st : t.state)
        if (st == BlockState::kClean || st == BlockState::kFetching) st = BlockState::kHostOnly;
    }
    s.gpu_blocks = 0;
    s.resident = false;
    s.prefetch.clear();
    s.next_prefetch.clear();
  }
  return ticket;
}

StatusOr<TicketId> KvStore::WriteThrough(SeqId seq, std::span<const Residency> layers) {
  std::lock_guard<std::mutex> lock(mu_);
  SLIM_ASSIGN_OR_RETURN(Seq * found, ResidentSeqLocked(seq));
  Seq& s = *found;
  std::vector<int64_t> limit(s.layers.size(), 0);
  for (const Residency& r : layers) {
    if (r.layer < 0 || r.layer >= layout_.n_layers) return InvalidArgumentError("KV store: bad layer");
    limit[static_cast<size_t>(r.layer)] = r.limit;
  }
  return OffloadLocked(seq, s, /*full_only=*/true, [&](size_t l, int64_t b) { return b < limit[l]; });
}

int64_t KvStore::BlocksToPrefetch(SeqId seq) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return 0;
  int64_t n = 0;
  for (const LayerTable& t : it->second.layers)
    for (BlockId b : t.blocks)
      if (b < 0) ++n;
  return n;
}

StatusOr<TicketId> KvStore::Prefetch(SeqId seq) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFoundError("KV store: no sequence " + std::to_string(seq));
  Seq& s = it->second;
  if (!s.error.ok()) return s.error;
  int64_t need = 0;
  for (const LayerTable& t : s.layers)
    for (BlockId b : t.blocks)
      if (b < 0) ++need;
  if (need == 0) {
    ++prefetch_hit_;
    s.resident = true;
    return TicketId{0};
  }
  if (need > gpu_.free_blocks()) {
    ++prefetch_failed_;
    return ResourceExhaustedError("KV gpu tier: prefetch of sequence " + std::to_string(seq) + " needs " +
                                  std::to_string(need) + " blocks, " + std::to_string(gpu_.free_blocks()) + " free");
  }
  CopyJob job;
  job.dir = CopyDir::kH2D;
  SlotStamp slot_wait;  // last users of the gpu slots taken now
  job.groups.resize(s.layers.size());
  const size_t bb = layout_.BlockBytes();
  std::vector<std::pair<size_t, size_t>> moved;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    LayerTable& t = s.layers[l];
    for (size_t i = 0; i < t.blocks.size(); ++i) {
      if (t.blocks[i] >= 0) continue;
      std::vector<BlockId> got;
      SLIM_RETURN_IF_ERROR(gpu_.Allocate(1, &got, &slot_wait));
      t.blocks[i] = got[0];
      t.state[i] = BlockState::kFetching;
      AddRange(&job.groups[l], gpu_.Data(got[0]), host_.Data(t.host[i]), bb);
      moved.emplace_back(l, i);
    }
  }
  s.gpu_blocks += need;
  // The slots' last attention reads (device-side), then any offload still reading them or
  // still writing this sequence's host copies (FIFO per direction: the newest covers the rest).
  job.after = slot_wait.compute;
  job.after_ticket = std::max(slot_wait.d2h, s.last_d2h);
  s.wait = Max(s.wait, SlotStamp{0, slot_wait.h2d, 0});
  const TicketId ticket = copy_->Submit(std::move(job));
  s.last_h2d = ticket;
  s.prefetch.push_back(ticket);
  s.resident = true;
  TrackCopy(seq, s, ticket, moved);
  ++prefetch_fetched_;
  return ticket;
}

int64_t KvStore::ReleaseIfClean(Seq& s, LayerTable& t, size_t i, const SlotStamp& stamp) {
  if (t.blocks[i] < 0) return 0;
  if (t.state[i] != BlockState::kClean) return -1;
  ReleaseGpu(t.blocks[i], stamp, true);
  t.blocks[i] = -1;
  t.state[i] = BlockState::kHostOnly;
  --s.gpu_blocks;
  ++evictions_;
  return 1;
}

void KvStore::ReleaseOutsideLocked(Seq& s, std::span<const Residency> layers, const SlotStamp& stamp,
                                   int64_t* released, int64_t* deferred) {
  for (const Residency& r : layers) {
    LayerTable& t = s.layers[static_cast<size_t>(r.layer)];
    size_t k = 0;
    const BlockId* ids = t.blocks.data();
    const int64_t limit = std::min<int64_t>(r.limit, static_cast<int64_t>(t.blocks.size()));
    for (int64_t b = 0; b < limit; ++b) {
      if (ids[b] < 0) continue;  // most blocks below the limit: already host-only
      while (k < r.keep.size() && r.keep[k] < b) ++k;
      if (k < r.keep.size() && r.keep[k] == b) continue;
      const int64_t n = ReleaseIfClean(s, t, static_cast<size_t>(b), stamp);
      if (n > 0) ++*released;
      if (n < 0) ++*deferred;
    }
  }
}

Status KvStore::ReleaseOutside(SeqId seq, std::span<const Residency> layers, int64_t* released, int64_t* deferred) {
  std::lock_guard<std::mutex> lock(mu_);
  *released = *deferred = 0;
  SLIM_ASSIGN_OR_RETURN(Seq * found, ResidentSeqLocked(seq));
  Seq& s = *found;
  for (const Residency& r : layers) {
    if (r.layer < 0 || r.layer >= layout_.n_layers) return InvalidArgumentError("KV store: bad layer");
  }
  ReleaseOutsideLocked(s, layers, SlotStamp{memory_->RecordCompute(), 0, 0}, released, deferred);
  return OkStatus();
}

StatusOr<KvStore::ResidencyChange> KvStore::SetResidency(SeqId seq, std::span<const Residency> layers,
                                                         bool release_later) {
  std::lock_guard<std::mutex> lock(mu_);
  SLIM_ASSIGN_OR_RETURN(Seq * found, ResidentSeqLocked(seq));
  Seq& s = *found;
  int64_t need = 0;
  bool host_copy_pending = false;  // a block to fetch whose host copy is still being written
  for (const Residency& r : layers) {
    if (r.layer < 0 || r.layer >= layout_.n_layers) return InvalidArgumentError("KV store: bad layer");
    const LayerTable& t = s.layers[static_cast<size_t>(r.layer)];
    if (r.limit < 0 || r.limit > t.capacity()) return InvalidArgumentError("KV store: residency limit past the table");
    int32_t prev = -1;
    for (int32_t b : r.keep) {
      if (b <= prev || b >= r.limit) return InvalidArgumentError("KV store: residency blocks must increase below the limit");
      prev = b;
      if (t.blocks[static_cast<size_t>(b)] < 0) {
        if (t.host[static_cast<size_t>(b)] < 0) return FailedPreconditionError("KV store: a block to fetch has no host copy");
        if (t.state[static_cast<size_t>(b)] == BlockState::kOffloading) host_copy_pending = true;
        ++need;
      }
    }
  }
  ResidencyChange out;
  // Slots given up wait for the compute queued so far (the attention that last read them); only
  // clean blocks are given up, and a clean block's copies (either way) have finished.
  const SlotStamp stamp{memory_->RecordCompute(), 0, 0};
  auto release = [&] { ReleaseOutsideLocked(s, layers, stamp, &out.released, &out.deferred); };
  // Fresh slots first, so the copies need not wait for the slots just given up; release first
  // only when the tier is short.
  const bool release_first = need > gpu_.free_blocks();
  if (release_first) release();
  if (need > gpu_.free_blocks()) {
    ++prefetch_failed_;
    return ResourceExhaustedError("KV gpu tier: residency of sequence " + std::to_string(seq) + " needs " +
                                  std::to_string(need) + " blocks, " + std::to_string(gpu_.free_blocks()) + " free");
  }
  if (need > 0) {
    CopyJob job;
    job.dir = CopyDir::kH2D;
    SlotStamp slot_wait;
    job.groups.resize(s.layers.size());
    std::vector<std::pair<size_t, size_t>> moved;
    for (const Residency& r : layers) {
      LayerTable& t = s.layers[static_cast<size_t>(r.layer)];
      for (int32_t b : r.keep) {
        const size_t i = static_cast<size_t>(b);
        if (t.blocks[i] >= 0) continue;
        std::vector<BlockId> got;
        SLIM_RETURN_IF_ERROR(gpu_.Allocate(1, &got, &slot_wait));
        t.blocks[i] = got[0];
        t.state[i] = BlockState::kFetching;
        AddRange(&job.groups[static_cast<size_t>(r.layer)], gpu_.Data(got[0]), host_.Data(t.host[i]), layout_.BlockBytes());
        moved.emplace_back(static_cast<size_t>(r.layer), i);
      }
    }
    s.gpu_blocks += need;
    // Issued in the order the layers were given (the caller's order of need), the rest after.
    std::vector<bool> listed(job.groups.size(), false);
    for (const Residency& r : layers) {
      const size_t g = static_cast<size_t>(r.layer);
      if (listed[g]) continue;
      listed[g] = true;
      job.order.push_back(g);
    }
    for (size_t g = 0; g < job.groups.size(); ++g)
      if (!listed[g]) job.order.push_back(g);
    job.after = slot_wait.compute;
    // Offloads still reading the slots taken; this sequence's own offloads only when one of
    // them is still writing a host copy read here (a write-through of other blocks in flight
    // must not hold the fetch back).
    job.after_ticket = host_copy_pending ? std::max(slot_wait.d2h, s.last_d2h) : slot_wait.d2h;
    s.wait = Max(s.wait, SlotStamp{0, slot_wait.h2d, 0});
    out.ticket = copy_->Submit(std::move(job));
    out.fetched = need;
    s.last_h2d = out.ticket;
    TrackCopy(seq, s, out.ticket, moved);
    if (in_compute_) {
      awaiting_.push_back(out.ticket);
      s.next_prefetch.push_back(out.ticket);
    } else {
      s.prefetch.push_back(out.ticket);
    }
    ++prefetch_fetched_;
  } else {
    ++prefetch_hit_;
  }
  if (!release_first && !release_later) release();
  return out;
}

void KvStore::RecordSelection(double overlap, bool kept) {
  std::lock_guard<std::mutex> lock(mu_);
  ++selections_;
  if (kept) ++selections_kept_;
  selection_overlap_.Observe(overlap);
}

int64_t KvStore::GpuBlocks(SeqId seq) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : it->second.gpu_blocks;
}

void KvStore::OnCopyDone(TicketId ticket, const Status& st) {
  std::lock_guard<std::mutex> lock(mu_);
  auto ts = ticket_seq_.find(ticket);
  if (ts == ticket_seq_.end()) return;
  const TicketBlocks done = std::move(ts->second);
  ticket_seq_.erase(ts);
  auto it = seqs_.find(done.seq);
  if (it == seqs_.end()) return;  // freed meanwhile
  Seq& s = it->second;
  if (!st.ok()) {
    s.error = st.WithPrefix("KV copy for sequence " + std::to_string(done.seq));
    return;
  }
  // The ticket's own blocks, where no later copy has claimed them (tables may have shrunk since).
  for (const auto& [l, i] : done.blocks) {
    if (l >= s.layers.size()) continue;
    LayerTable& t = s.layers[l];
    if (i >= t.copy.size() || t.copy[i] != ticket) continue;
    t.copy[i] = 0;
    BlockState& b = t.state[i];
    if (b == BlockState::kFetching || b == BlockState::kOffloading) {
      b = t.blocks[i] >= 0 ? BlockState::kClean : BlockState::kHostOnly;
    }
  }
}

bool KvStore::Resident(SeqId seq) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  return it != seqs_.end() && it->second.resident;
}

Status KvStore::HostWait(TicketId ticket) { return ticket == 0 ? OkStatus() : copy_->HostWait(ticket); }

bool KvStore::Done(TicketId ticket) const { return ticket == 0 || copy_->Done(ticket); }

void KvStore::Drain() const { copy_->Drain(); }

Status KvStore::BeginCompute(std::span<const SeqId> seqs) {
  SlotStamp wait;
  {
    std::lock_guard<std::mutex> lock(mu_);
    awaiting_.clear();
    for (SeqId id : seqs) {
      auto it = seqs_.find(id);
      if (it == seqs_.end()) return NotFoundError("KV store: no sequence " + std::to_string(id));
      Seq& s = it->second;
      if (!s.error.ok()) return s.error;
      if (!s.resident) return FailedPreconditionError("KV store: sequence " + std::to_string(id) + " is swapped out");
      wait = Max(wait, s.wait);
      s.wait = SlotStamp{};
      awaiting_.insert(awaiting_.end(), s.prefetch.begin(), s.prefetch.end());
    }
    in_compute_ = true;
  }
  // Copies still touching slots these sequences were just given (outside the lock: the copy
  // workers' completion callbacks take it).
  if (wait.h2d != 0) copy_->ComputeWait(wait.h2d, -1);
  if (wait.d2h != 0) copy_->ComputeWait(wait.d2h, -1);
  return OkStatus();
}

void KvStore::AwaitLayer(int layer) {
  for (TicketId t : awaiting_) copy_->ComputeWait(t, layer);
}

void KvStore::EndCompute(std::span<const SeqId> seqs) {
  const Fence f = memory_->RecordCompute();
  std::lock_guard<std::mutex> lock(mu_);
  for (SeqId id : seqs) {
    auto it = seqs_.find(id);
    if (it == seqs_.end()) continue;
    it->second.last_compute = f;
    // The compute stream has waited for every layer of these; what this pass issued is for the next.
    it->second.prefetch = std::move(it->second.next_prefetch);
    it->second.next_prefetch.clear();
  }
  awaiting_.clear();
  in_compute_ = false;
}

int32_t KvStore::Tokens(SeqId seq, int layer) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end() || layer < 0 || layer >= layout_.n_layers) return 0;
  return it->second.layers[static_cast<size_t>(layer)].n_tokens;
}

LayerTable KvStore::Table(SeqId seq, int layer) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end() || layer < 0 || layer >= layout_.n_layers) return LayerTable{};
  return it->second.layers[static_cast<size_t>(layer)];
}

const LayerTable* KvStore::TablePtr(SeqId seq, int layer) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end() || layer < 0 || layer >= layout_.n_layers) return nullptr;
  return &it->second.layers[static_cast<size_t>(layer)];
}

uint8_t* KvStore::HostData(BlockId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return host_.Data(id);
}

GpuView KvStore::View() const {
  return GpuView{gpu_.base(), gpu_.total_blocks(), layout_.BlockBytes(), layout_.HeadBytes()};
}

KvStoreStats KvStore::Stats() const {
  KvStoreStats s;
  s.transfers = copy_->Stats();
  std::lock_guard<std::mutex> lock(mu_);
  const size_t bb = layout_.BlockBytes();
  s.gpu.pool = gpu_.Stats();
  s.gpu.capacity_blocks = gpu_.total_blocks();
  s.host.pool = host_.Stats();
  s.host.capacity_blocks = host_capacity_;
  for (TierStats* t : {&s.gpu, &s.host}) {
    t->capacity_bytes = static_cast<size_t>(t->capacity_blocks) * bb;
    t->bytes_in_use = static_cast<size_t>(t->pool.used_blocks) * bb;
    t->by_state[0] = t->pool.free_blocks;
  }
  s.sequences = static_cast<int64_t>(seqs_.size());
  for (const auto& [id, seq] : seqs_) {
    if (!seq.resident) ++s.swapped_sequences;
    for (const LayerTable& t : seq.layers) {
      s.tokens_stored += t.n_tokens;
      for (size_t i = 0; i < t.state.size(); ++i) {
        const int st = static_cast<int>(t.state[i]);
        if (t.blocks[i] >= 0) ++s.gpu.by_state[st];
        if (t.host[i] >= 0) ++s.host.by_state[st];
      }
    }
  }
  s.prefetch_fetched = prefetch_fetched_;
  s.prefetch_hit = prefetch_hit_;
  s.selections = selections_;
  s.selections_kept = selections_kept_;
  s.selection_overlap = selection_overlap_;
  s.prefetch_failed = prefetch_failed_;
  s.evictions = evictions_;
  s.host_error = host_error_;
  return s;
}

}  // namespace slim::kv
