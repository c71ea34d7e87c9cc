// Model::BatchState, the rows of one forward pass and the decode selections pending in it:
// shared by the layer loop (model.cpp) and the decode KV selection's part of it
// (model_selection.cpp). Internal to the model.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model.h"

namespace slim {

// The rows of a batch as they shrink under pruning.
struct Model::BatchState {
  int64_t n_rows = 0;              // rows alive now (pruning compacts them)
  int64_t n_seqs = 0;
  bool any_prune = false;          // some sequence has pruning stages
  bool tail_done = false;          // the last layer ran on the last rows only, leaving them in last_
  bool any_select = false;         // some sequence decodes under a decode KV budget
  std::vector<AttnSeq> attn_view;  // per sequence: what attention reads (ApplySelections)
  // Selections scored at a choosing layer whose decision (Select, then the tier change) waits
  // until the next layer's projection is queued, so that the engine thread's wait for the scores
  // and its host work overlap the device's work on the rest of the choosing layer.
  struct PendingSelection {
    kv::SeqId seq = 0;
    DecodeSelection* select = nullptr;
    SegmentSelection* seg = nullptr;
    DecodeSelectionStats* stats = nullptr;
    int slot = -1;              // Backend::BeginScoreBlocks slot; -1: `scores` already hold them
    std::vector<float> scores;  // key-bound scores (computed on the host at once)
  };
  std::vector<PendingSelection> pending;
  // Tier changes whose releases wait until the last layer is queued (ReleaseDeferred): only the
  // fetches are on the path to the next layer.
  struct PendingRelease {
    kv::SeqId seq = 0;
    SegmentSelection* seg = nullptr;
    DecodeSelectionStats* stats = nullptr;
    std::vector<kv::KvStore::Residency> layers;
    int64_t deferred = 0;  // blocks SetResidency already found not clean (when it released first)
  };
  std::vector<PendingRelease> releases;
  std::vector<int32_t> ids;        // [n_rows at the start] token ids
  std::vector<int32_t> pos;        // [n_rows] positions
  std::vector<AttnSeq> attn;       // per sequence: its rows
  std::vector<int32_t> last_rows;  // per sequence: its last row
};

}  // namespace slim
