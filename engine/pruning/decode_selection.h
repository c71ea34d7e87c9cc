// SlimInfer's decode-time KV selection (DESIGN.md sections 1 and 5, user 2): with a decode KV
// budget, each segment of a sequence's layers (segment 0: the layers before the first pruning
// stage; segment s: from stage s's layer up to the next) attends, per decode step, over the
// prompt blocks chosen for it rather than over all it stores. Plain host data and logic; the
// model applies a selection by giving attention a block table of the chosen blocks
// (Model::AttentionBlock), the engine keeps one DecodeSelection per sequence.
//
// The rule, per step and segment with first layer l_s:
//   * the new token's post-RoPE query at l_s scores the segment's prompt blocks against their
//     unit-mean keys at l_s (ScoreBlocksRef with a query window of one row: the prefill scorer's
//     definition, engine/pruning/block_scorer.h), or, with DecodeKvScore::kKeyBounds, against
//     each unit's per-channel key minimum and maximum (KeyBoundScores: Quest's upper bound of
//     q . k over the unit, softmax-normalized per head, summed over heads);
//   * the top blocks up to the budget are chosen, block 0 (the sink) and the last prompt block
//     always among them (SelectBlocks); generated tokens are always attended;
//   * when the chosen set overlaps the set in force by at least gamma (|new & old| / |new|), the
//     set in force stays; otherwise the chosen set replaces it;
//   * layers l_s + 1 ... of the segment use the result in this step; layer l_s itself attends
//     over the set in force before the step (with a KV tier, what is resident when it runs) and
//     takes the new one from the next step on. The first step after the prefill starts from
//     every block (all resident) and its choice always applies.
// With a host tier (tiered()): after the prefill the selectable prompt blocks (all but the last)
// of the tiered layers are written through to the host; in a step whose set changed, once l_s's
// attention and the next layer's projection are queued, the gpu tier is made to hold exactly the
// new set at those layers
// (KvStore::SetResidency): entering blocks are prefetched (layers l_s + 1 ... wait for them in
// this step, l_s in the next), the others' gpu slots released once clean.
// Thread-safety: none (engine thread).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "engine/core/status.h"
#include "engine/core/tensor.h"
#include "kvstore/kv_store.h"

namespace slim {

// How a segment's prompt blocks are scored for the new token's query.
enum class DecodeKvScore {
  kUnitMeans,  // |q . mean key| per unit (the prefill scorer's rule, on the backend)
  kKeyBounds,  // upper bound of q . k from per-unit key minima and maxima (on the host)
};
const char* DecodeKvScoreName(DecodeKvScore s);
StatusOr<DecodeKvScore> ParseDecodeKvScore(std::string_view name);  // "means" or "bounds"

struct DecodeSelectionOptions {
  int64_t budget_tokens = 0;  // prompt tokens per layer a segment attends over; 0 = all
  double gamma = 0.9;         // overlap at or above which the set in force is kept
  int block_tokens = 64;
  int unit_tokens = 8;        // the key summaries' unit (the pruning scorer's)
  // A segment chooses at its first layer, or at this layer when it lies inside the segment:
  // then the layers from the first up to and including it attend over every block.
  int select_layer = 0;
  DecodeKvScore score = DecodeKvScore::kUnitMeans;
  // With a host tier: the layers right after the choosing one that keep every prompt block on
  // the gpu tier. They read the same chosen blocks, but with no fetch to wait for; the first
  // fetched layer then has these layers' time for its copy. Costs their prompt KV in gpu memory.
  int resident_layers = 0;
};

// One segment's state: its layers, the unit-mean keys of its prompt blocks at its first layer,
// and the block sets in force (prompt block indices, increasing).
struct SegmentSelection {
  int first_layer = 0, end_layer = 0;  // layers [first_layer, end_layer)
  int choose_layer = 0;                // where the segment chooses (DecodeSelectionOptions::select_layer)
  int32_t prompt_tokens = 0;           // prompt tokens stored at these layers
  int64_t prompt_blocks = 0;
  int64_t n_units = 0;
  Buffer unit_keys;                    // kUnitMeans: on the backend, activation dtype: [n_units, n_kv_heads * head_dim]
  std::vector<float> unit_bounds;      // kKeyBounds: on the host, [n_units, 2 * kv_dim]: minima, then maxima
  std::vector<int32_t> first_set;      // what layer choose_layer attends over this step (when it is first_layer)
  std::vector<int32_t> rest_set;       // what the segment's later layers attend over this step
  kv::LayerTable view;                 // scratch: the block table handed to attention
  bool residency_dirty = false;        // tiered: the gpu tier does not hold exactly rest_set yet
  // The layers whose selectable blocks move between tiers: l_s when the segment chooses there,
  // and the layers after the choosing one but for the first resident_layers of them.
  std::vector<int> tier_layers;
};

// Totals over the steps (Engine::decode_selection_stats).
struct DecodeSelectionStats {
  int64_t selections = 0;       // segment selections made (one per decode step per segment)
  int64_t kept_by_gamma = 0;    // of which the set in force stayed (overlap >= gamma)
  int64_t changed = 0;          // of which the set was replaced
  int64_t blocks_swapped_in = 0;  // blocks entering a set (per segment, not per layer)
  double overlap_sum = 0.0;     // sum of the overlap ratios
  int64_t attended_block_layers = 0;  // prompt blocks attended, summed over layers and steps
  int64_t stored_block_layers = 0;    // prompt blocks stored, likewise (the dense figure)
  // With a host tier: residency changes, blocks fetched and gpu slots released (per layer).
  int64_t residency_updates = 0;
  int64_t blocks_fetched = 0;
  int64_t blocks_released = 0;
  // Engine-thread time spent deciding (Model::FinishSelections: the scores' wait, the choice and
  // the tier change), and of it the wait for the scores.
  double host_seconds = 0.0;
  double score_wait_seconds = 0.0;
};

// The decision for one segment's step.
struct SelectionDecision {
  std::vector<int32_t> set;  // the set in force after the step
  double overlap = 1.0;      // |chosen & old| / |chosen|
  bool kept = true;          // the old set stayed
  int64_t entering = 0;      // blocks of `set` not in the old set
};

// Chooses from `block_scores` (one per prompt block) up to `budget_blocks` blocks (block 0 and
// the last always) and applies the gamma rule against `in_force` (increasing indices).
SelectionDecision Reselect(const std::vector<float>& block_scores, int64_t budget_blocks,
                           const std::vector<int32_t>& in_force, double gamma);

// Unit-mean keys of `n_tokens` keys [n_tokens, kv_dim] (row stride kv_dim): unit u averages
// tokens [u * unit, min((u + 1) * unit, n_tokens)).
std::vector<float> UnitMeanKeys(const std::vector<float>& keys, int64_t n_tokens, int kv_dim, int unit_tokens);

// Per-unit key bounds of the same keys: row u holds the per-channel minimum over the unit's
// tokens in columns [0, kv_dim) and the maximum in [kv_dim, 2 * kv_dim).
std::vector<float> UnitKeyBounds(const std::vector<float>& keys, int64_t n_tokens, int kv_dim, int unit_tokens);

// Block scores of one query q [n_heads * head_dim] against unit key bounds (UnitKeyBounds):
//   ub_h(u)  = sum_d max(q[h]_d * min_u[g]_d, q[h]_d * max_u[g]_d) / sqrt(head_dim), g = h / G
//              (no key of the unit can give head h a larger logit)
//   score(u) = (1/H) * sum_h softmax over units of ub_h(u)
//   score(b) = max over the units of block b
std::vector<float> KeyBoundScores(const float* q, const std::vector<float>& bounds, int64_t n_units, int n_heads,
                                  int n_kv_heads, int head_dim, int units_per_block);

class DecodeSelection {
 public:
  // Segments from their boundaries (0, each stage's layer, n_layers) and the prompt tokens each
  // stores; a segment whose prompt fits the budget gets no selection. InvalidArgument for a
  // block size that is not a multiple of the unit.
  static StatusOr<DecodeSelection> Create(const DecodeSelectionOptions& o, const std::vector<int>& bounds,
                                          const std::vector<int32_t>& prompt_tokens);

  const DecodeSelectionOptions& options() const { return o_; }
  std::vector<SegmentSelection>& segments() { return segs_; }
  const std::vector<SegmentSelection>& segments() const { return segs_; }
  // The segment (with a selection) whose layers hold `layer`, or null.
  SegmentSelection* SegmentAt(int layer);
  int64_t budget_blocks() const { return (o_.budget_tokens + o_.block_tokens - 1) / o_.block_tokens; }

  // At the segment's first layer: from the block scores of the new token's query against the
  // unit-mean keys (Backend::ScoreBlocks over unit_keys with units of one row, blocks of
  // block_tokens / unit_tokens units, a query window of one row), sets rest_set by the rule
  // above; counts into *stats.
  // Returns the decision (overlap, kept).
  SelectionDecision Select(SegmentSelection& s, const std::vector<float>& block_scores, DecodeSelectionStats* stats);
  // Tiered: the residency SetResidency is to establish for segment `s` (rest_set below the last
  // prompt block at each of its tier layers).
  std::vector<kv::KvStore::Residency> ResidencyOf(const SegmentSelection& s) const;
  bool tiered() const { return tiered_; }
  void set_tiered(bool t) { tiered_ = t; }
  int units_per_block() const { return o_.block_tokens / o_.unit_tokens; }
  // After a step: each segment's first layer takes the set its later layers used.
  void EndStep();
  // The block table attention reads at `layer` of segment `s` over the real table `t`: the
  // chosen full prompt blocks, then every block from the last prompt block on (the last prompt
  // block, generated tokens and the block the new token goes to). Returns the table and sets
  // *n_past to the tokens before the new ones in it.
  const kv::LayerTable& ViewAt(SegmentSelection& s, int layer, const kv::LayerTable& t, int32_t* n_past);

 private:
  DecodeSelectionOptions o_;
  std::vector<SegmentSelection> segs_;
  bool tiered_ = false;
};

}  // namespace slim
