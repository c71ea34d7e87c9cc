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
  // the last position's logits of each sequence to logits[i * vocab, (i + 1) * vocab).
  Status Forward(kv::KvStore& kv, std::span<const ForwardSeq> seqs, std::vector<float>* logits);
  // As Forward, but leaves the logits on the backend and writes (*summaries)[i], the summary of
  // sequence i's logits per requests[i] (Backend::SummarizeLogits; one request per sequence).
  Status ForwardSummaries(kv::KvStore& kv, std::span<const ForwardSeq> seqs,
                          std::span<const SummaryRequest> requests, std::vector<LogitsSummary>* summaries);
  // Sequence i's logits of the last ForwardSummaries -> row [vocab], for the rows a summary
  // cannot decide. Valid until the next forward pass.
  Status DownloadLogits(int64_t i, std::vector<float>* row);

 private:
  Model(ModelConfig config, Backend* backend);
  Status EnsureWorkspace(int64_t n_rows, int64_t n_seqs);
  struct BatchState;
  // Forward inside the KV store's BeginCompute / EndCompute, as named steps: StartBatch (check
  // and flatten), embed, PrepareAllLayers (no pruning: every layer's batch to the backend at
  // once), per layer AttentionBlock and MlpBlock, LogitsOfLastRows.
  Status ForwardPass(kv::KvStore& kv, std::span<const ForwardSeq> seqs, std::vector<float>* logits);
  Status StartBatch(const kv::KvStore& kv, std::span<const ForwardSeq> seqs, BatchState* b);
  void PrepareAllLayers(const kv::KvStore& kv, std::span<const ForwardSeq> seqs, const BatchState& b);
  // QKV, pruning before attention, RoPE + KV write, attention, output projection, pruning after
  // attention, residual add + the MLP's norm into h_.
  Status AttentionBlock(int layer, kv::KvStore& kv, std::span<const ForwardSeq> seqs, BatchState& b);
  void MlpBlock(int layer, const BatchState& b);
  Status LogitsOfLastRows(const BatchState& b, std::vector<float>* logits);
  // The two optimisations: a pruning layer projects K of every row and Q of the query windows
  // only (before scoring); the last layer attends from each sequence's last row alone.
  void ProjectForPruning(int layer, std::span<const ForwardSeq> seqs, BatchState& b);
  void TailAttention(const kv::KvStore& kv, TensorView q, BatchState& b);
  // Applies the pruning stages at `layer` (before or after its attention) and compacts the
  // batch rows of x (and of qkv when before attention).
  Status PruneAt(int layer, bool before_attention, std::span<const ForwardSeq> seqs, BatchState& b);

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
  int64_t summarized_rows_ = 0;  // rows of logits_ the last ForwardSummaries left
};

}  // namespace slim
