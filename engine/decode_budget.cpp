// Engine: the start of a sequence's decode KV selection after its prefill (the per-step part
// runs inside Model::Forward, see engine/pruning/decode_selection.h).
#include <algorithm>
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
  std::vector<int32_t> prompt_tokens;
  for (size_t s = 0; s + 1 < bounds.size(); ++s) prompt_tokens.push_back(kv_->Tokens(seq, bounds[s]));
  SLIM_ASSIGN_OR_RETURN(DecodeSelection sel, DecodeSelection::Create(o, bounds, prompt_tokens));
  if (sel.segments().empty()) return OkStatus();  // every segment's prompt fits the budget
  // Unit-mean keys of each selecting segment's prompt, at its first layer, read from the KV
  // blocks (K of KV head g: rows [g * block_tokens, (g + 1) * block_tokens) of head_dim at the
  // block's start, one download per block) and kept on the backend for its block scorer.
  const int hd = L.head_dim, kvh = L.n_kv_heads, kv_dim = kvh * hd, bt = L.block_tokens;
  std::vector<float> block(static_cast<size_t>(kvh) * bt * hd);
  for (SegmentSelection& seg : sel.segments()) {
    const kv::LayerTable* t = kv_->TablePtr(seq, seg.choose_layer);
    if (t == nullptr) return NotFoundError("no KV table for layer " + std::to_string(seg.choose_layer));
    std::vector<float> keys(static_cast<size_t>(seg.prompt_tokens) * kv_dim);
    for (int64_t b = 0; b < seg.prompt_blocks; ++b) {
      TensorView v;
      v.data = kv_->Data(t->blocks[static_cast<size_t>(b)]);
      v.dtype = backend_->kv_dtype();
      v.device = backend_->device();
      v.rows = int64_t{kvh} * bt;
      v.cols = hd;
      v.stride = hd;
      SLIM_RETURN_IF_ERROR(backend_->Download(v, block.data()));
      const int64_t rows = std::min<int64_t>(bt, seg.prompt_tokens - b * bt);
      for (int g = 0; g < kvh; ++g) {
        for (int64_t r = 0; r < rows; ++r) {
          std::copy_n(&block[static_cast<size_t>((int64_t{g} * bt + r) * hd)], hd,
                      &keys[static_cast<size_t>((b * bt + r) * kv_dim + g * hd)]);
        }
      }
    }
    seg.n_units = (seg.prompt_tokens + o.unit_tokens - 1) / o.unit_tokens;
    const std::vector<float> unit_keys = UnitMeanKeys(keys, seg.prompt_tokens, kv_dim, o.unit_tokens);
    SLIM_ASSIGN_OR_RETURN(seg.unit_keys, backend_->Alloc(backend_->act_dtype(), seg.n_units, kv_dim));
    SLIM_RETURN_IF_ERROR(backend_->Upload(unit_keys.data(), seg.unit_keys.view()));
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
