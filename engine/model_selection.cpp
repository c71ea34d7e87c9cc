// The decode KV budget's part of the layer loop (engine/pruning/decode_selection.h): the
// attention tables of the chosen blocks, the scoring at a segment's choosing layer, the choice
// and the tier change once the next layer is queued, and the releases after the last layer.
#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/model_batch.h"
#include "engine/pruning/decode_selection.h"

namespace slim {

Status Model::FinishSelections(kv::KvStore& kv, BatchState& b) {
  using Clock = std::chrono::steady_clock;
  for (size_t i = 0; i < b.pending.size(); ++i) {
    BatchState::PendingSelection& p = b.pending[i];
    DecodeSelectionStats unused;
    DecodeSelectionStats& stats = p.stats != nullptr ? *p.stats : unused;
    const Clock::time_point t0 = Clock::now();
    if (p.slot >= 0) SLIM_RETURN_IF_ERROR(backend_->EndScoreBlocks(p.slot, &p.scores));
    const Clock::time_point t1 = Clock::now();
    const SelectionDecision d = p.select->Select(*p.seg, p.scores, &stats);
    kv.RecordSelection(d.overlap, d.kept);
    // Tiered: the gpu tier is made to hold the new set at the segment's tier layers. The
    // entering blocks are fetched now; the slots given up are released after the last layer is
    // queued (ReleaseDeferred), fenced on this pass's compute, which reads the old set at the
    // choosing layer.
    if (p.select->tiered() && p.seg->residency_dirty) {
      BatchState::PendingRelease rel{p.seq, p.seg, p.stats, p.select->ResidencyOf(*p.seg), 0};
      SLIM_ASSIGN_OR_RETURN(const kv::KvStore::ResidencyChange ch,
                            kv.SetResidency(p.seq, rel.layers, /*release_later=*/true));
      ++stats.residency_updates;
      stats.blocks_fetched += ch.fetched;
      stats.blocks_released += ch.released;
      rel.deferred = ch.deferred;
      b.releases.push_back(std::move(rel));
    }
    stats.score_wait_seconds += std::chrono::duration<double>(t1 - t0).count();
    stats.host_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  b.pending.clear();
  return OkStatus();
}

Status Model::ReleaseDeferred(kv::KvStore& kv, BatchState& b) {
  for (BatchState::PendingRelease& r : b.releases) {
    int64_t released = 0, deferred = 0;
    SLIM_RETURN_IF_ERROR(kv.ReleaseOutside(r.seq, r.layers, &released, &deferred));
    // Blocks not yet clean on the host keep their slots: the next step tries again.
    r.seg->residency_dirty = deferred + r.deferred > 0;
    if (r.stats != nullptr) r.stats->blocks_released += released;
  }
  b.releases.clear();
  return OkStatus();
}

Status Model::ApplySelections(int layer, kv::KvStore& kv, std::span<const ForwardSeq> seqs, TensorView q,
                              BatchState& b) {
  b.attn_view = b.attn;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i].select == nullptr) continue;
    SegmentSelection* seg = seqs[i].select->SegmentAt(layer);
    if (seg == nullptr) continue;
    AttnSeq& a = b.attn_view[i];
    if (a.n_rows != 1) return InvalidArgumentError("decode KV budget: a selection applies to one-token decodes");
    // Up to the choosing layer every block (the choosing layer itself: the set in force, when
    // it is the segment's first layer); after it the blocks chosen there.
    const bool whole = layer < seg->choose_layer || (layer == seg->choose_layer && layer != seg->first_layer);
    const std::vector<int32_t>& in_force = layer == seg->choose_layer ? seg->first_set : seg->rest_set;
    if (seqs[i].select_stats != nullptr) {
      seqs[i].select_stats->attended_block_layers += whole ? seg->prompt_blocks : static_cast<int64_t>(in_force.size());
      seqs[i].select_stats->stored_block_layers += seg->prompt_blocks;
    }
    if (!whole) {
      a.table = &seqs[i].select->ViewAt(*seg, layer, *a.table, &a.n_past);
      for (kv::BlockId id : a.table->blocks) {
        if (id < 0) {
          return InternalError("decode KV selection: a chosen block of layer " + std::to_string(layer) +
                               " has no gpu slot");
        }
      }
    }
    if (layer == seg->choose_layer) {
      // The new token's rotated query chooses what the segment's later layers read: the
      // backend's block scorer over the unit-mean keys, the query as the last row of a window
      // of one (rows before it are not read), or the key bounds' scores on the host.
      const int64_t nu = seg->n_units;
      BatchState::PendingSelection p;
      p.seq = seqs[i].seq;
      p.select = seqs[i].select;
      p.seg = seg;
      p.stats = seqs[i].select_stats;
      if (seqs[i].select->options().score == DecodeKvScore::kKeyBounds) {
        // Key bounds are scored on the host: the query row comes down.
        select_q_host_.resize(static_cast<size_t>(q.cols));
        SLIM_RETURN_IF_ERROR(backend_->Download(q.Rows(a.row_begin, 1), select_q_host_.data()));
        p.scores = KeyBoundScores(select_q_host_.data(), seg->unit_bounds, nu, shape_.n_heads, shape_.n_kv_heads,
                                  shape_.head_dim, seqs[i].select->units_per_block());
      } else {
        if (select_q_rows_ < nu || select_q_.view().cols != q.cols || select_q_.view().dtype != q.dtype) {
          select_q_ = Buffer();
          SLIM_ASSIGN_OR_RETURN(select_q_, backend_->Alloc(q.dtype, std::max(nu, 2 * select_q_rows_), q.cols));
          select_q_rows_ = select_q_.view().rows;
        }
        const int32_t row = a.row_begin;
        backend_->GatherRows(q, std::span<const int32_t>(&row, 1), select_q_.Rows(nu - 1, 1));
        p.slot = static_cast<int>(b.pending.size());
        SLIM_RETURN_IF_ERROR(backend_->BeginScoreBlocks(p.slot, select_q_.Rows(0, nu), seg->unit_keys.view(), shape_, 0,
                                                        static_cast<int32_t>(nu), seqs[i].select->units_per_block(), 1,
                                                        1, false));
      }
      b.pending.push_back(std::move(p));  // decided by FinishSelections
    }
  }
  return OkStatus();
}

}  // namespace slim
