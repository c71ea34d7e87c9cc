// The CUDA backend: bf16 weights, activations and KV blocks with fp32 accumulation; cuBLAS
// GEMMs; our kernels (one file pair each in this folder) for the rest. All work is enqueued on
// one compute stream; host index arrays go through a HostStager. Ops that return void record
// their first failure, which the next Status-returning call (Sync, Download, ScoreBlocks, ...)
// reports. Thread-safety: one thread at a time (the engine thread).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cuda/flash_attention.h"
#include "engine/backend/cuda/gemm_tuner.h"
#include "engine/backend/cuda/host_stager.h"
#include "engine/backend/cuda/stream_graphs.h"

namespace slim::cuda {

class CudaBackend final : public Backend {
 public:
  static StatusOr<std::unique_ptr<CudaBackend>> Create(const BackendOptions& options);
  ~CudaBackend() override;

  Device device() const override { return Device::kCuda; }
  std::string Describe() const override;
  DType kv_dtype() const override { return DType::kBF16; }
  DType act_dtype() const override { return DType::kBF16; }

  int64_t TunedMinRows() const override { return gemm_.tuning() ? GemmTuner::kMinRows : 0; }
  StatusOr<Buffer> Alloc(DType dtype, int64_t rows, int64_t cols) override;
  StatusOr<std::unique_ptr<kv::TierMemory>> CreateKvMemory() override;
  Status Upload(const float* host, TensorView dst) override;
  Status Download(TensorView src, float* host) override;
  Status Sync() override;
  Status FillSynthetic(const SyntheticFill& fill, TensorView dst) override;

  void Embed(TensorView table, std::span<const int32_t> ids, TensorView out) override;
  void RmsNorm(TensorView x, TensorView w, float eps, TensorView out) override;
  void Add(TensorView acc, TensorView x) override;
  void AddBias(TensorView x, TensorView bias) override;
  void AddRmsNorm(TensorView acc, TensorView x, TensorView w, float eps, TensorView out) override;
  void MatMul(TensorView x, TensorView w, TensorView out) override;
  void Rope(TensorView x, int n_heads, int head_dim, std::span<const int32_t> positions,
            const RopeTable& rope) override;
  void SwiGlu(TensorView gate_up, TensorView out) override;
  // Fuses SwiGLU into the down projection's GEMV for few rows (BackendOptions::cuda_gemv).
  void Mlp(TensorView x, const MlpWeights& w, const MlpScratch& scratch, TensorView out) override;
  void GatherRows(TensorView src, std::span<const int32_t> rows, TensorView dst) override;
  void WriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape, TensorView k,
               TensorView v) override;
  void RopeWriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape, TensorView q,
                   TensorView k, TensorView v, std::span<const int32_t> positions, const RopeTable& rope) override;
  void PrepareLayers(const kv::KvStore& kv, std::span<const std::vector<AttnSeq>> layers,
                     const AttnShape& shape) override;
  Status ScoreBlocks(TensorView q, TensorView k, const AttnShape& shape, int32_t row_begin, int32_t n_rows,
                     int block_tokens, int unit_tokens, int query_window, bool attention,
                     std::vector<float>* block_scores) override;
  // Begin queues the scorer and the scores' copy to pinned memory; End waits for an event.
  Status BeginScoreBlocks(int slot, TensorView q, TensorView k, const AttnShape& shape, int32_t row_begin,
                          int32_t n_rows, int block_tokens, int unit_tokens, int query_window, bool attention) override;
  Status EndScoreBlocks(int slot, std::vector<float>* block_scores) override;
  // One kernel over the paged K (key_summary.h); only the block ids are staged.
  Status KeyUnitMeans(const kv::KvStore& kv, const kv::LayerTable& table, const AttnShape& shape, int32_t n_tokens,
                      int unit_tokens, TensorView out) override;
  void Attention(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape, TensorView q,
                 TensorView out) override;
  // Penalizes in place and restores (sample_topk.h); downloads only the summaries.
  Status SummarizeLogits(TensorView logits, std::span<const SummaryRequest> requests,
                         std::vector<LogitsSummary>* out) override;

  // Records the pass as graph segments (StreamGraphs), split at layer boundaries 1, 3, 7, 15,
  // ... so the device starts on the first layers while later ones are recorded. Not while
  // profiling (its events are recorded per op), nor after a failed pass.
  bool BeginGraphPass() override;
  void GraphBoundary() override;
  Status EndGraphPass() override;
  const StreamGraphs& graphs() const { return graphs_; }

  void SetProfiling(bool on) override { profiling_ = on; }
  std::vector<OpTime> TakeProfile() override;

  cudaStream_t stream() const { return stream_; }

 private:
  CudaBackend() = default;
  Status Init(const BackendOptions& options);
  // Keeps the first failure of a void op for the next Status-returning call.
  void Note(const Status& s);
  Status TakeError();
  Status DoMatMul(TensorView x, TensorView w, TensorView out);
  Status DoGatherRows(TensorView src, std::span<const int32_t> rows, TensorView dst);
  Status DoAttention(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape, TensorView q,
                     TensorView out);
  // The device copy of a batch's PagedSeq array and block tables, then the flash tiles and
  // decode items Attention launches (offsets in int32 words). WriteKv and the Attention after
  // it stage the same bytes, so the second finds the first's copy.
  struct AttnStaging {
    const void* device = nullptr;
    size_t tiles_at = 0, items_at = 0;
    int n_tiles = 0, n_items = 0;
    int max_decode_keys = 0;
  };
  StatusOr<AttnStaging> StageAttention(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape);
  // The host image StageAttention copies (offsets relative to its start).
  AttnStaging BuildAttentionImage(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                                  std::vector<int32_t>* image);
  // Images staged ahead by PrepareLayers and where their copies are (valid in stager lap `lap`).
  struct Prepared {
    std::vector<int32_t> image;
    const void* device = nullptr;
    uint64_t lap = 0;
  };
  std::vector<Prepared> prepared_;
  Status DoWriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape, TensorView k,
                   TensorView v);
  Status DoRopeWriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape, TensorView q,
                       TensorView k, TensorView v, std::span<const int32_t> positions, const RopeTable& rope);
  // Device copy of [inv_freq count][inv_freq][positions] (the Rope ops' staging).
  StatusOr<const int32_t*> StageRope(std::span<const int32_t> positions, const RopeTable& rope);

  // Profiling: an event pair around each op while on.
  struct Pending {
    std::string op;
    cudaEvent_t begin, end;
  };
  class OpScope;
  cudaEvent_t NewEvent();

  int device_ = 0;
  std::string name_;
  int n_sms_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_ws_ = nullptr;
  GemmTuner gemm_;  // prefill products: GemmEx or the fastest cuBLASLt algorithm per shape
  HostStager stager_;
  StreamGraphs graphs_;
  bool graphs_on_ = true;    // BackendOptions::cuda_graphs, off after a failed pass
  int graph_boundaries_ = 0;  // GraphBoundary calls in the open pass
  DeviceScratch gather_scratch_, convert_scratch_, attn_scratch_, score_scratch_;
  std::vector<int32_t> host_i32_;  // reused host staging vectors
  Status error_;
  bool profiling_ = false;
  FlashKernel flash_kernel_ = FlashKernel::kAuto;
  Toggle gemv_ = Toggle::kAuto;  // BackendOptions::cuda_gemv
  std::vector<Pending> pending_;
  std::vector<cudaEvent_t> free_events_;
  DeviceScratch summary_scratch_;        // SummarizeLogits: kernels' scratch and output
  std::vector<int32_t> summary_words_;    // its staged request words
  PinnedBuffer summary_host_;             // its output, written there by a copy kernel
  // A scoring's unit scores, written into pinned memory by a copy kernel, and its end.
  struct ScoreSlot {
    ~ScoreSlot();
    PinnedBuffer host;
    cudaEvent_t done = nullptr;
    int64_t n_units = 0, n_blocks = 0;
    int units_per_block = 1;
    bool begun = false;
  };
  Status LaunchScores(ScoreSlot* slot, TensorView q, TensorView k, const AttnShape& shape, int32_t row_begin,
                      int32_t n_rows, int block_tokens, int unit_tokens, int query_window, bool attention);
  Status CollectScores(ScoreSlot* slot, std::vector<float>* block_scores);
  ScoreSlot sync_scores_;                              // ScoreBlocks
  std::vector<std::unique_ptr<ScoreSlot>> score_slots_;  // Begin/EndScoreBlocks
};

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const BackendOptions& options);

}  // namespace slim::cuda
