// Engine: the start of a sequence's decode KV selection after its prefill (the per-step part
// runs inside Model::Forward, see engine/pruning/decode_selection.h).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace slim {

const DecodeSelection* Engine::decode_selection(kv::SeqId seq) const {
  auto it = selections_.find(seq);
  return it == selections_.end() ? nullptr : &it->second;
}

Status Engine::StartSelection(kv::SeqId seq, const std::vector<int>& bounds, int64_t budget_tokens) {
  const kv::KvLayout& L = kv_->layout();
  DecodeSelectionOptions o;
  o.budget_tokens = budget_tokens;
  o.gamma = decode_kv_gamma_;
  o.block_tokens = L.block_tokens;
  o.unit_tokens = default_pruning_.unit_tokens;
  o.select_layer = decode_kv_select_layer_;
  o.score = decode_kv_score_;
  o.resident_layers = decode_kv_resident_layers_;
  std::vector<int32_t> prompt_tokens;
  for (size_t s = 0; s + 1 < bounds.size(); ++s) prompt_tokens.push_back(kv_->Tokens(seq, bounds[s]));
  SLIM_ASSIGN_OR_RETURN(DecodeSelection sel, DecodeSelection::Create(o, bounds, prompt_tokens));
  if (sel.segments().empty()) return OkStatus();  // every segment's prompt fits the budget
  // Unit-mean keys of each selecting segment's prompt at the layer it chooses at, read from its
  // KV blocks and kept on the backend for its block scorer.
  AttnShape shape;
  shape.n_heads = model_->config().n_heads;
  shape.n_kv_heads = L.n_kv_heads;
  shape.head_dim = L.head_dim;
  shape.scale = 1.0f / std::sqrt(static_cast<float>(L.head_dim));
  const int kv_dim = L.n_kv_heads * L.head_dim;
  for (SegmentSelection& seg : sel.segments()) {
    const kv::LayerTable* t = kv_->TablePtr(seq, seg.choose_layer);
    if (t == nullptr) return NotFoundError("no KV table for layer " + std::to_string(seg.choose_layer));
    seg.n_units = (seg.prompt_tokens + o.unit_tokens - 1) / o.unit_tokens;
    if (o.score == DecodeKvScore::kKeyBounds) {
      std::vector<float> keys;
      SLIM_RETURN_IF_ERROR(
          backend_->HostKeys(*kv_, *t, shape, seg.prompt_tokens, &keys).WithPrefix("decode KV bounds"));
      seg.unit_bounds = UnitKeyBounds(keys, seg.prompt_tokens, kv_dim, o.unit_tokens);
      continue;
    }
    SLIM_ASSIGN_OR_RETURN(seg.unit_keys, backend_->Alloc(backend_->act_dtype(), seg.n_units, kv_dim));
    SLIM_RETURN_IF_ERROR(
        backend_->KeyUnitMeans(*kv_, *t, shape, seg.prompt_tokens, o.unit_tokens, seg.unit_keys.view()));
  }
  // With a host tier: the selectable prompt blocks of the tiered layers are written through
  // now, in the background; their gpu slots go once the set is chosen and the copies landed. A
  // host tier too full for them leaves the sequence all-resident (the selection still applies).
  if (kv_->HostCapacityBlocks() > 0) {
    std::vector<kv::KvStore::Residency> layers;
    for (const SegmentSelection& seg : sel.segments()) {
      for (int l : seg.tier_layers) layers.push_back(kv::KvStore::Residency{l, seg.prompt_blocks - 1, {}});
    }
    StatusOr<kv::TicketId> t = kv_->WriteThrough(seq, layers);
    if (t.ok()) {
      sel.set_tiered(true);
    } else if (t.status().code() != StatusCode::kResourceExhausted) {
      return t.status();
    }
  }
  selections_.insert_or_assign(seq, std::move(sel));
  return OkStatus();
}

Status Engine::SwapIn(kv::SeqId seq) {
  if (!seq_len_.count(seq)) return NotFoundError("no live sequence " + std::to_string(seq));
  SLIM_RETURN_IF_ERROR(kv_->Prefetch(seq).status());
  // Every block came back: a tiered selection trims the gpu tier again at its next choice.
  if (auto it = selections_.find(seq); it != selections_.end()) {
    for (SegmentSelection& seg : it->second.segments()) seg.residency_dirty = it->second.tiered();
  }
  return OkStatus();
}

size_t Engine::GpuKvBytes(kv::SeqId seq) const {
  return static_cast<size_t>(kv_->GpuBlocks(seq)) * kv_->layout().BlockBytes();
}

}  // namespace slim
