// A loaded LLaMA-family model on a backend: its weights (fused QKV and gate-up projections),
// RoPE table, and the transformer layer loop, written once over the Backend interface.
// Thread-safety: Forward is called from one thread at a time (the engine thread).
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/core/status.h"
#include "engine/model/model_config.h"
#include "engine/model/weight_source.h"
#include "engine/pruning/decode_selection.h"
#include "engine/pruning/schedule.h"
#include "kvstore/kv_store.h"

namespace slim {

struct LayerWeights {
  Buffer attn_norm;  // [1, d]
  Buffer wqkv;       // [(H + 2 * KVH) * hd, d]: q rows, then k rows, then v rows
  Buffer bqkv;       // f32 [1, (H + 2 * KVH) * hd] when the model has QKV biases, else empty
  Buffer wo;         // [d, H * hd]
  Buffer ffn_norm;   // [1, d]
  Buffer w_gate_up;  // [2 * ff, d]: gate rows, then up rows
  Buffer w_down;     // [d, ff]
  // GGUF-quantized copies of the matrices above for backends that stream them in decode
  // (Backend::WantsQuantizedWeights); empty otherwise.
  Buffer wqkv_q, wo_q, w_gate_up_q, w_down_q;
};

// New tokens of one sequence for a forward pass. Its KV must be reserved for them at every
// layer (KvStore::ReserveAll) before Forward.
struct ForwardSeq {
  kv::SeqId seq = 0;
  std::span<const int32_t> tokens;
  std::span<const int32_t> positions;  // same length as tokens
  // SlimInfer pruning of this sequence's prompt (prefill of a fresh sequence only); the KV
  // reservation must follow TokensPerLayer(*prune, ...). `summary` receives what was kept.
  const ResolvedSchedule* prune = nullptr;
  PruningSummary* summary = nullptr;
  // A chunk of a chunked prefill runs only layers [layer_begin, layer_end) (layer_end 0 = all),
  // where no pruning stage lies strictly inside the range, so each layer's KV only grows, chunk
  // by chunk; its rows are those alive at layer_begin (every prompt row before the first
  // pruning layer, the kept ones after a stage; `positions` increasing, `tokens` empty when
  // layer_begin > 0). `carry` [rows, d_model] f32 holds the rows' hidden state entering
  // layer_begin (read when > 0) and receives it leaving layer_end - 1 (when < n_layers).
  // Sequences starting past layer 0 come last in a batch, by increasing layer_begin; only
  // those that reach the last layer get logits (in batch order).
  int layer_begin = 0, layer_end = 0;
  TensorView carry;
  // A decode (one token) under a decode KV budget: attention at each layer of a segment with a
  // selection reads the blocks it chose (DecodeSelection), and each such segment's first layer
  // chooses anew, counting into `select_stats`. Null: every block.
  DecodeSelection* select = nullptr;
  DecodeSelectionStats* select_stats = nullptr;
};

RopeTable MakeRopeTable(const ModelConfig& c, const std::vector<float>& freq_factors = {});

class Model {
 public:
  static StatusOr<std::unique_ptr<Model>> Load(const WeightSource& source, Backend* backend);

  const ModelConfig& config() const { return config_; }
  Backend* backend() const { return backend_; }
  kv::KvLayout KvLayoutFor(int block_tokens = 64) const;
  size_t weight_bytes() const { return weight_bytes_; }
  // Device bytes of the activation buffers a pass over n_rows rows of n_seqs sequences needs.
  size_t WorkspaceBytes(int64_t n_rows, int64_t n_seqs) const;

  // Runs every sequence's new tokens through all layers, appends their K/V to `kv`, and writes
  // the last position's logits of each sequence that reaches the last layer to
  // logits[i * vocab, (i + 1) * vocab) (null: they stay on the backend, for SummarizeLast /
  // DownloadLogits).
  Status Forward(kv::KvStore& kv, std::span<const ForwardSeq> seqs, std::vector<float>* logits);
  // The rows a chunked prefill keeps at `stage` (of `schedule`, placed before attention): x holds
  // the hidden states [n, d_model] f32 of the rows alive entering stage.layer, at prompt
  // positions `positions`; the result indexes x, increasing (Forward's choice for the same rows).
  StatusOr<std::vector<int32_t>> KeptRowsAt(const ResolvedSchedule& schedule, const ResolvedStage& stage,
                                            TensorView x, std::span<const int32_t> positions);
  // (*summaries)[i]: the summary of row i of the last pass's logits per requests[i]
  // (Backend::SummarizeLogits; one request per sequence of that pass).
  Status SummarizeLast(std::span<const SummaryRequest> requests, std::vector<LogitsSummary>* summaries);
  // Sequence i's logits of the last pass -> row [vocab]. Valid until the next pass.
  Status DownloadLogits(int64_t i, std::vector<float>* row);
  // The first failure of a decode pass recorded as launch graphs (Backend::EndGraphPass; the
  // pass then ran again without), OK when none.
  const Status& graph_failure() const { return graph_failure_; }

 private:
  Model(ModelConfig config, Backend* backend);
  Status EnsureWorkspace(int64_t n_rows, int64_t n_seqs);
  struct BatchState;
  // Forward inside the KV store's BeginCompute / EndCompute, as named steps: StartBatch (check
  // and flatten), embed, PrepareAllLayers (no pruning: every layer's batch to the backend at
  // once), per layer AttentionBlock and MlpBlock, LogitsOfLastRows.
  Status ForwardPass(kv::KvStore& kv, std::span<const ForwardSeq> seqs, std::vector<float>* logits);
  // `cur` receives the sequences whose rows start the pass (layer_begin 0), b aligned to it.
  Status StartBatch(const kv::KvStore& kv, std::span<const ForwardSeq> seqs, BatchState* b,
                    std::vector<ForwardSeq>* cur);
  void PrepareAllLayers(const kv::KvStore& kv, std::span<const ForwardSeq> seqs, const BatchState& b);
  int EndOf(const ForwardSeq& s) const { return s.layer_end > 0 ? s.layer_end : config_.n_layers; }
  // A chunk starting at a later layer joins the batch there (its rows appended from its carry;
  // the caller norms them); after `layer`, chunks ending there leave it (rows to their carry,
  // the rest compacted).
  void Enter(const ForwardSeq& s, BatchState& b, std::vector<ForwardSeq>& cur);
  void LeaveAfter(int layer, BatchState& b, std::vector<ForwardSeq>& cur);
  // QKV, pruning before attention, RoPE + KV write, attention, output projection, pruning after
  // attention, residual add + the MLP's norm into h_.
  Status AttentionBlock(int layer, kv::KvStore& kv, std::span<const ForwardSeq> seqs, BatchState& b);
  void MlpBlock(int layer, const BatchState& b);
  Status LogitsOfLastRows(const BatchState& b, std::vector<float>* logits);
  // The two optimisations: a pruning layer projects K of every row and Q of the query windows
  // only (before scoring); the last layer attends from each sequence's last row alone.
  void ProjectForPruning(int layer, std::span<const ForwardSeq> seqs, BatchState& b);
  void TailAttention(const kv::KvStore& kv, TensorView q, BatchState& b);
  // Decode KV budgets at `layer`: the sequences' attention tables in b.attn_view (the chosen
  // blocks where a selection applies, b.attn's otherwise); at a segment's choosing layer it
  // queues the scoring of the rotated query q, decided later by FinishSelections.
  Status ApplySelections(int layer, kv::KvStore& kv, std::span<const ForwardSeq> seqs, TensorView q, BatchState& b);
  // The choices ApplySelections scored (b.pending): each segment's new set (DecodeSelection::
  // Select), and with a host tier the gpu tier made to hold it at the segment's tier layers
  // (DecodeSelection::ResidencyOf, KvStore::SetResidency: the fetches now, the releases in
  // ReleaseDeferred). Called once the next layer's projection is queued, before its KV wait,
  // and after the last layer.
  Status FinishSelections(kv::KvStore& kv, BatchState& b);
  // The releases of those tier changes (KvStore::ReleaseOutside), once the last layer is queued.
  Status ReleaseDeferred(kv::KvStore& kv, BatchState& b);
  // Applies the pruning stages at `layer` (before or after its attention) and compacts the
  // batch rows of x (and of qkv when before attention).
  Status PruneAt(int layer, bool before_attention, std::span<const ForwardSeq> seqs, BatchState& b);
  // Block scores of sequence `a`'s rows in qkv_ (rotated k of every row, q of its query window)
  // and the rows `stage` keeps, relative to a.row_begin.
  StatusOr<std::vector<int32_t>> ScoreAndKeep(const ResolvedSchedule& s, const ResolvedStage& stage, const AttnSeq& a,
                                              int64_t n_rows);

  ModelConfig config_;
  Backend* backend_;
  RopeTable rope_;
  AttnShape shape_;
  Buffer tok_embd_;   // [vocab, d]
  Buffer out_norm_;   // [1, d]
  Buffer lm_head_;    // [vocab, d], empty when tied to tok_embd_
  Buffer lm_head_q_;  // quantized copy of the LM head (lm_head_ or tok_embd_), may be empty
  std::vector<LayerWeights> layers_;
  size_t weight_bytes_ = 0;

  // Activations, grown on demand.
  int64_t ws_rows_ = 0, ws_seqs_ = 0;
  Buffer x_, h_, qkv_, attn_, proj_, gate_up_, act_, last_, last_norm_, logits_;
  int64_t last_rows_ = 0;  // rows of logits_ the last pass left (one per sequence)
  // Decode selections: the query as the last row of a scoring window (ApplySelections).
  Buffer select_q_;
  int64_t select_q_rows_ = 0;
  std::vector<float> select_q_host_;  // the query row, for key-bound scores
  Status graph_failure_;
};

}  // namespace slim
