// KvStore: sequence -> per-layer block tables over the host block pool.
#include "kvstore/kv_store.h"

#include <string>

namespace slim::kv {

StatusOr<std::unique_ptr<KvStore>> KvStore::Create(const KvStoreOptions& o) {
  const KvLayout& l = o.layout;
  if (l.n_layers <= 0 || l.n_kv_heads <= 0 || l.head_dim <= 0 || l.block_tokens <= 0 ||
      (l.elem_bytes != 2 && l.elem_bytes != 4)) {
    return InvalidArgumentError("KV store: invalid layout (layers " + std::to_string(l.n_layers) +
                                ", kv heads " + std::to_string(l.n_kv_heads) + ", head dim " +
                                std::to_string(l.head_dim) + ")");
  }
  std::unique_ptr<BlockPool> pool;
  if (o.arena != nullptr) {
    SLIM_ASSIGN_OR_RETURN(pool, BlockPool::CreateOver(Tier::kGpu, o.arena, o.host_blocks, l.BlockBytes()));
  } else {
    SLIM_ASSIGN_OR_RETURN(pool, BlockPool::CreateHost(o.host_blocks, l.BlockBytes()));
  }
  return std::unique_ptr<KvStore>(new KvStore(l, std::move(pool)));
}

KvStore::KvStore(const KvLayout& layout, std::unique_ptr<BlockPool> host)
    : layout_(layout), host_(std::move(host)) {}

Status KvStore::AddSequence(SeqId seq) {
  std::lock_guard<std::mutex> lock(mu_);
  if (seqs_.count(seq)) return Status(StatusCode::kAlreadyExists, "KV store: sequence " + std::to_string(seq) + " exists");
  seqs_.emplace(seq, std::vector<LayerTable>(static_cast<size_t>(layout_.n_layers)));
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
    int64_t have = (it == seqs_.end() || l >= it->second.size()) ? 0 : it->second[l].capacity();
    int64_t want = layout_.BlocksFor(tokens_per_layer[l]);
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
  return host_->free_blocks();
}

Status KvStore::Reserve(SeqId seq, int layer, int64_t tokens) {
  std::vector<int64_t> per_layer(static_cast<size_t>(layout_.n_layers), 0);
  if (layer < 0 || layer >= layout_.n_layers) {
    return InvalidArgumentError("KV store: layer " + std::to_string(layer) + " out of range");
  }
  per_layer[static_cast<size_t>(layer)] = tokens;
  return ReserveAll(seq, per_layer);
}

Status KvStore::ReserveAll(SeqId seq, const std::vector<int64_t>& tokens_per_layer) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFoundError("KV store: no sequence " + std::to_string(seq));
  if (tokens_per_layer.size() > it->second.size()) {
    return InvalidArgumentError("KV store: more layers than the model has");
  }
  const int64_t need = BlocksNeededLocked(seq, tokens_per_layer);
  if (need > host_->free_blocks()) {
    return ResourceExhaustedError("KV store: sequence " + std::to_string(seq) + " needs " +
                                  std::to_string(need) + " more blocks, " +
                                  std::to_string(host_->free_blocks()) + " free");
  }
  for (size_t l = 0; l < tokens_per_layer.size(); ++l) {
    LayerTable& t = it->second[l];
    const int64_t want = layout_.BlocksFor(tokens_per_layer[l]);
    if (want > t.capacity()) SLIM_RETURN_IF_ERROR(host_->Allocate(want - t.capacity(), &t.blocks));
  }
  return OkStatus();
}

Status KvStore::Append(SeqId seq, int layer, int32_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFoundError("KV store: no sequence " + std::to_string(seq));
  if (layer < 0 || layer >= layout_.n_layers) return InvalidArgumentError("KV store: bad layer");
  LayerTable& t = it->second[static_cast<size_t>(layer)];
  if (n < 0 || t.n_tokens + static_cast<int64_t>(n) > t.capacity() * layout_.block_tokens) {
    return FailedPreconditionError("KV store: append of " + std::to_string(n) +
                                   " tokens exceeds the reserved capacity at layer " +
                                   std::to_string(layer));
  }
  t.n_tokens += n;
  return OkStatus();
}

Status KvStore::Free(SeqId seq) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return NotFoundError("KV store: no sequence " + std::to_string(seq));
  for (auto& t : it->second)
    for (BlockId b : t.blocks) host_->Release(b);
  seqs_.erase(it);
  return OkStatus();
}

LayerTable KvStore::Table(SeqId seq, int layer) const {
  std::lock_guard<std::mutex> lock(mu_);
  const LayerTable* t = nullptr;
  auto it = seqs_.find(seq);
  if (it != seqs_.end() && layer >= 0 && layer < layout_.n_layers) t = &it->second[static_cast<size_t>(layer)];
  return t ? *t : LayerTable{};
}

const LayerTable* KvStore::TablePtr(SeqId seq, int layer) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end() || layer < 0 || layer >= layout_.n_layers) return nullptr;
  return &it->second[static_cast<size_t>(layer)];
}

KvStoreStats KvStore::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  KvStoreStats s;
  s.host = host_->Stats();
  s.sequences = static_cast<int64_t>(seqs_.size());
  for (const auto& [id, tables] : seqs_)
    for (const auto& t : tables) s.tokens_stored += t.n_tokens;
  s.bytes_in_use = static_cast<size_t>(s.host.used_blocks) * s.host.block_bytes;
  return s;
}

}  // namespace slim::kv
