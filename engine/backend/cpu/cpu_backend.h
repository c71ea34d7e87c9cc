// The CPU backend: fp32 everything, OpenBLAS sgemm for projections and prefill attention, a
// small thread pool for the element-wise loops and decode attention. KV blocks are fp32 or, on
// request, f16 (converted with F16C on write and read; the arithmetic stays fp32).
#pragma once

#include <memory>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cpu/thread_pool.h"

namespace slim::cpu {

class CpuBackend final : public Backend {
 public:
  CpuBackend(int threads, DType kv_dtype);  // kv_dtype: kF32 or kF16

  Device device() const override { return Device::kCpu; }
  std::string Describe() const override;
  DType kv_dtype() const override { return kv_dtype_; }

  StatusOr<Buffer> Alloc(DType dtype, int64_t rows, int64_t cols) override;
  StatusOr<std::unique_ptr<kv::TierMemory>> CreateKvMemory() override;
  Status Upload(const float* host, TensorView dst) override;
  Status Download(TensorView src, float* host) override;
  // A shape error in one of the void ops below skips that op and is returned (once) by the next
  // Sync, Download or SummarizeLogits, as on the CUDA backend; the backend keeps working.
  Status Sync() override { return TakeError(); }

  void Embed(TensorView table, std::span<const int32_t> ids, TensorView out) override;
  void RmsNorm(TensorView x, TensorView w, float eps, TensorView out) override;
  void Add(TensorView acc, TensorView x) override;
  void AddBias(TensorView x, TensorView bias) override;
  void MatMul(TensorView x, TensorView w, TensorView out) override;
  bool WantsQuantizedWeights() const override { return true; }
  StatusOr<Buffer> UploadQuantized(uint32_t ggml_type, const uint8_t* rows, int64_t n_rows, int64_t cols) override;
  void MatMulQ(TensorView x, TensorView w, const Buffer* wq, TensorView out) override;
  void Rope(TensorView x, int n_heads, int head_dim, std::span<const int32_t> positions,
            const RopeTable& rope) override;
  void SwiGlu(TensorView gate_up, TensorView out) override;
  void GatherRows(TensorView src, std::span<const int32_t> rows, TensorView dst) override;
  void WriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
               TensorView k, TensorView v) override;
  void Attention(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                 TensorView q, TensorView out) override;
  Status ScoreBlocks(TensorView q, TensorView k, const AttnShape& shape, int32_t row_begin, int32_t n_rows,
                     int block_tokens, int unit_tokens, int query_window, bool attention,
                     std::vector<float>* block_scores) override;
  // The host reference (engine/sampler/logits_summary.h) on the rows where they are.
  Status SummarizeLogits(TensorView logits, std::span<const SummaryRequest> requests,
                         std::vector<LogitsSummary>* out) override;

 private:
  // Prefill-sized attention of one sequence: gathers K/V per KV head, sgemm for scores and
  // values, causal softmax in between.
  void AttentionGemm(const kv::KvStore& kv, const AttnSeq& s, const AttnShape& shape, TensorView q,
                     TensorView out);
  // Few-row attention (decode): split over (sequence, row, KV head, key chunk) with partial
  // softmaxes merged afterwards; keys and values are read once per KV head.
  template <typename T>
  void AttentionDecode(const kv::KvStore& kv, const std::vector<const AttnSeq*>& seqs, const AttnShape& shape,
                       TensorView q, TensorView out);

  // Records `what` as the pending error unless `ok`; returns ok.
  bool Check(bool ok, const char* what);
  Status TakeError();

  int threads_;
  DType kv_dtype_;
  Status error_;
  ThreadPool pool_;
  std::vector<float> k_scratch_, v_scratch_, s_scratch_, q_scratch_, o_scratch_, partials_;
  SummaryScratch summary_scratch_;
};

}  // namespace slim::cpu
