// Decode-time KV selection: the rule of decode_selection.h as plain host code.
#include "engine/pruning/decode_selection.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "engine/pruning/block_scorer.h"  // SelectBlocks

namespace slim {

SelectionDecision Reselect(const std::vector<float>& block_scores, int64_t budget_blocks,
                           const std::vector<int32_t>& in_force, double gamma) {
  SelectionDecision d;
  const std::vector<int32_t> chosen = SelectBlocks(block_scores, budget_blocks);
  int64_t common = 0;
  for (int32_t b : chosen) common += std::binary_search(in_force.begin(), in_force.end(), b) ? 1 : 0;
  d.overlap = chosen.empty() ? 1.0 : static_cast<double>(common) / static_cast<double>(chosen.size());
  d.kept = d.overlap >= gamma;
  if (d.kept) {
    d.set = in_force;
  } else {
    d.set = chosen;
    d.entering = static_cast<int64_t>(chosen.size()) - common;
  }
  return d;
}

std::vector<float> UnitMeanKeys(const std::vector<float>& keys, int64_t n_tokens, int kv_dim, int unit_tokens) {
  const int64_t n_units = (n_tokens + unit_tokens - 1) / unit_tokens;
  std::vector<float> out(static_cast<size_t>(n_units * kv_dim), 0.0f);
  for (int64_t u = 0; u < n_units; ++u) {
    const int64_t t0 = u * unit_tokens, t1 = std::min<int64_t>(n_tokens, t0 + unit_tokens);
    float* o = &out[static_cast<size_t>(u * kv_dim)];
    for (int64_t t = t0; t < t1; ++t) {
      const float* k = &keys[static_cast<size_t>(t * kv_dim)];
      for (int d = 0; d < kv_dim; ++d) o[d] += k[d];
    }
    const float inv = 1.0f / static_cast<float>(t1 - t0);
    for (int d = 0; d < kv_dim; ++d) o[d] *= inv;
  }
  return out;
}

const char* DecodeKvScoreName(DecodeKvScore s) { return s == DecodeKvScore::kKeyBounds ? "bounds" : "means"; }

StatusOr<DecodeKvScore> ParseDecodeKvScore(std::string_view name) {
  if (name == "means") return DecodeKvScore::kUnitMeans;
  if (name == "bounds") return DecodeKvScore::kKeyBounds;
  return InvalidArgumentError("decode KV score '" + std::string(name) + "' (known: means, bounds)");
}

std::vector<float> UnitKeyBounds(const std::vector<float>& keys, int64_t n_tokens, int kv_dim, int unit_tokens) {
  const int64_t n_units = (n_tokens + unit_tokens - 1) / unit_tokens;
  std::vector<float> out(static_cast<size_t>(n_units * 2 * kv_dim));
  for (int64_t u = 0; u < n_units; ++u) {
    const int64_t t0 = u * unit_tokens, t1 = std::min<int64_t>(n_tokens, t0 + unit_tokens);
    float* lo = &out[static_cast<size_t>(u * 2 * kv_dim)];
    float* hi = lo + kv_dim;
    std::copy_n(&keys[static_cast<size_t>(t0 * kv_dim)], kv_dim, lo);
    std::copy_n(&keys[static_cast<size_t>(t0 * kv_dim)], kv_dim, hi);
    for (int64_t t = t0 + 1; t < t1; ++t) {
      const float* k = &keys[static_cast<size_t>(t * kv_dim)];
      for (int d = 0; d < kv_dim; ++d) {
        lo[d] = std::min(lo[d], k[d]);
        hi[d] = std::max(hi[d], k[d]);
      }
    }
  }
  return out;
}

std::vector<float> KeyBoundScores(const float* q, const std::vector<float>& bounds, int64_t n_units, int n_heads,
                                  int n_kv_heads, int head_dim, int units_per_block) {
  const int group = n_heads / n_kv_heads, kv_dim = n_kv_heads * head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  std::vector<float> unit(static_cast<size_t>(n_units), 0.0f), ub(static_cast<size_t>(n_units));
  for (int h = 0; h < n_heads; ++h) {
    const float* qh = q + static_cast<size_t>(h) * head_dim;
    const int g = h / group;
    float top = -std::numeric_limits<float>::infinity();
    for (int64_t u = 0; u < n_units; ++u) {
      const float* lo = &bounds[static_cast<size_t>(u * 2 * kv_dim + g * head_dim)];
      const float* hi = lo + kv_dim;
      float s = 0.0f;
      for (int d = 0; d < head_dim; ++d) s += std::max(qh[d] * lo[d], qh[d] * hi[d]);
      ub[static_cast<size_t>(u)] = s * scale;
      top = std::max(top, ub[static_cast<size_t>(u)]);
    }
    double z = 0.0;
    for (float& x : ub) {
      x = std::exp(x - top);
      z += x;
    }
    const double inv = 1.0 / (z * n_heads);
    for (int64_t u = 0; u < n_units; ++u) {
      unit[static_cast<size_t>(u)] += static_cast<float>(ub[static_cast<size_t>(u)] * inv);
    }
  }
  const int64_t n_blocks = (n_units + units_per_block - 1) / units_per_block;
  std::vector<float> blocks(static_cast<size_t>(n_blocks), 0.0f);
  for (int64_t u = 0; u < n_units; ++u) {
    float& b = blocks[static_cast<size_t>(u / units_per_block)];
    b = std::max(b, unit[static_cast<size_t>(u)]);
  }
  return blocks;
}

StatusOr<DecodeSelection> DecodeSelection::Create(const DecodeSelectionOptions& o, const std::vector<int>& bounds,
                                                  const std::vector<int32_t>& prompt_tokens) {
  if (o.budget_tokens < 0) return InvalidArgumentError("decode KV budget: must be >= 0");
  if (o.select_layer < 0) return InvalidArgumentError("decode KV selection layer: must be >= 0");
  if (o.resident_layers < 0) return InvalidArgumentError("decode KV resident layers: must be >= 0");
  if (!(o.gamma >= 0.0 && o.gamma <= 1.0)) return InvalidArgumentError("decode KV gamma: must be in [0, 1]");
  if (o.unit_tokens <= 0 || o.block_tokens % o.unit_tokens != 0) {
    return InvalidArgumentError("decode KV selection: the block size must be a multiple of the unit size");
  }
  if (bounds.size() < 2 || prompt_tokens.size() + 1 != bounds.size()) {
    return InvalidArgumentError("decode KV selection: one prompt length per segment");
  }
  DecodeSelection sel;
  sel.o_ = o;
  if (o.budget_tokens == 0) return sel;
  for (size_t s = 0; s + 1 < bounds.size(); ++s) {
    SegmentSelection seg;
    seg.first_layer = bounds[s];
    seg.end_layer = bounds[s + 1];
    seg.choose_layer = o.select_layer > seg.first_layer && o.select_layer < seg.end_layer ? o.select_layer : seg.first_layer;
    seg.prompt_tokens = prompt_tokens[s];
    seg.prompt_blocks = (prompt_tokens[s] + o.block_tokens - 1) / o.block_tokens;
    if (seg.prompt_blocks <= sel.budget_blocks()) continue;  // everything fits: attended whole
    seg.first_set.resize(static_cast<size_t>(seg.prompt_blocks));
    for (size_t b = 0; b < seg.first_set.size(); ++b) seg.first_set[b] = static_cast<int32_t>(b);
    seg.rest_set = seg.first_set;
    if (seg.choose_layer == seg.first_layer) seg.tier_layers.push_back(seg.first_layer);
    for (int l = seg.choose_layer + 1 + o.resident_layers; l < seg.end_layer; ++l) seg.tier_layers.push_back(l);
    sel.segs_.push_back(std::move(seg));
  }
  return sel;
}

SegmentSelection* DecodeSelection::SegmentAt(int layer) {
  for (SegmentSelection& s : segs_) {
    if (layer >= s.first_layer && layer < s.end_layer) return &s;
  }
  return nullptr;
}

SelectionDecision DecodeSelection::Select(SegmentSelection& s, const std::vector<float>& scores,
                                          DecodeSelectionStats* stats) {
  SelectionDecision d = Reselect(scores, budget_blocks(), s.rest_set, o_.gamma);
  if (static_cast<int64_t>(s.rest_set.size()) > budget_blocks()) {
    // Every block, as after the prefill, is no set to keep: the first choice always applies.
    d = SelectionDecision{SelectBlocks(scores, budget_blocks()), d.overlap, false, 0};
  }
  ++stats->selections;
  stats->overlap_sum += d.overlap;
  if (d.kept) {
    ++stats->kept_by_gamma;
  } else {
    ++stats->changed;
    stats->blocks_swapped_in += d.entering;
    s.rest_set = d.set;
    s.residency_dirty = tiered_;
  }
  return d;
}

std::vector<kv::KvStore::Residency> DecodeSelection::ResidencyOf(const SegmentSelection& s) const {
  const int32_t limit = static_cast<int32_t>(s.prompt_blocks - 1);  // the last prompt block stays
  const auto end = std::lower_bound(s.rest_set.begin(), s.rest_set.end(), limit);
  const std::span<const int32_t> keep(s.rest_set.data(), static_cast<size_t>(end - s.rest_set.begin()));
  std::vector<kv::KvStore::Residency> out;
  out.reserve(s.tier_layers.size());
  // In the order the blocks are needed: the layers after the choosing one in this step, the
  // choosing layer itself (it reads the new set from the next step on) last.
  for (int l : s.tier_layers)
    if (l != s.choose_layer) out.push_back(kv::KvStore::Residency{l, limit, keep});
  for (int l : s.tier_layers)
    if (l == s.choose_layer) out.push_back(kv::KvStore::Residency{l, limit, keep});
  return out;
}

void DecodeSelection::EndStep() {
  for (SegmentSelection& s : segs_) s.first_set = s.rest_set;
}

const kv::LayerTable& DecodeSelection::ViewAt(SegmentSelection& s, int layer, const kv::LayerTable& t,
                                              int32_t* n_past) {
  const std::vector<int32_t>& set = layer == s.choose_layer ? s.first_set : s.rest_set;
  kv::LayerTable& v = s.view;
  v.blocks.clear();
  v.host.clear();
  v.state.clear();
  const int64_t last = s.prompt_blocks - 1;
  auto take = [&](int64_t b) {
    v.blocks.push_back(t.blocks[static_cast<size_t>(b)]);
    if (static_cast<size_t>(b) < t.host.size()) v.host.push_back(t.host[static_cast<size_t>(b)]);
    if (static_cast<size_t>(b) < t.state.size()) v.state.push_back(t.state[static_cast<size_t>(b)]);
  };
  for (int32_t b : set) {
    if (b < last) take(b);
  }
  const int64_t full = static_cast<int64_t>(v.blocks.size());
  for (int64_t b = last; b < t.capacity(); ++b) take(b);
  v.n_tokens = static_cast<int32_t>(full * o_.block_tokens + (t.n_tokens - last * o_.block_tokens));
  *n_past = v.n_tokens;
  return v;
}

}  // namespace slim
