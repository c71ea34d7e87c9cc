// The compute backend interface the layer loop is written against (engine/model.cpp). Each op
// takes tensor views on the backend's device; index arrays (token ids, positions, rows) come as
// host spans and the backend stages them. CPU: backend/cpu; CUDA: backend/cuda.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"
#include "engine/core/tensor.h"
#include "engine/model/weight_source.h"
#include "engine/sampler/logits_summary.h"
#include "kvstore/kv_store.h"
#include "kvstore/tier_memory.h"

namespace slim {

// Per-dimension-pair inverse frequencies (RoPE scaling already applied) and the attention
// factor; rotation pairs are adjacent elements (x[2i], x[2i+1]), as ggml's "normal" mode.
struct RopeTable {
  std::vector<float> inv_freq;  // [rope_dim / 2]
  int rope_dim = 0;
};

struct AttnShape {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  float scale = 0.0f;  // 1 / sqrt(head_dim)
};

// One sequence's slice of a batch for KV writes and attention at one layer.
struct AttnSeq {
  int32_t row_begin = 0;                // first row of this sequence in q/k/v
  int32_t n_rows = 0;                   // new tokens of this sequence
  int32_t n_past = 0;                   // tokens already in its KV at this layer
  const kv::LayerTable* table = nullptr;  // reserved for n_past + n_rows tokens
};

// The MLP's weights: gate_up [2 ff, d] (gate rows, then up rows), down [d, ff], each with its
// optional quantized copy (UploadQuantized; may be null).
struct MlpWeights {
  TensorView gate_up;
  const Buffer* gate_up_q = nullptr;
  TensorView down;
  const Buffer* down_q = nullptr;
};

// Scratch of the MLP for n rows: gate_up [n, 2 ff], act [n, ff] (a fused backend may leave act
// unused).
struct MlpScratch {
  TensorView gate_up;
  TensorView act;
};

// Device time of one kind of op, summed over its calls while profiling was on.
struct OpTime {
  std::string op;  // "MatMul[rows x out x in]", "Attention", ...
  double ms = 0.0;
  int64_t calls = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string Describe() const = 0;
  // KV element type this backend stores (f32 on CPU, bf16 on CUDA).
  virtual DType kv_dtype() const = 0;
  // Type of the layer loop's activation buffers other than the residual stream, which stays
  // f32 (f32 on CPU, bf16 on CUDA).
  virtual DType act_dtype() const { return DType::kF32; }

  // The memory and copy primitives the KV store's tiers run on (kvstore/tier_memory.h): the
  // gpu tier's arena, pinned host memory, copy streams and their markers against this
  // backend's compute stream.
  virtual StatusOr<std::unique_ptr<kv::TierMemory>> CreateKvMemory() = 0;
  // Activation/weight buffers; ResourceExhausted when the device is full.
  virtual StatusOr<Buffer> Alloc(DType dtype, int64_t rows, int64_t cols) = 0;
  // Host fp32 [dst.rows, dst.cols] -> dst (converted to dst.dtype).
  virtual Status Upload(const float* host, TensorView dst) = 0;
  // src -> host fp32 [src.rows, src.cols].
  virtual Status Download(TensorView src, float* host) = 0;
  // Waits for queued work (no-op on CPU).
  virtual Status Sync() = 0;
  // Writes synthetic weights (engine/model/weight_source.h) into dst in place, converted to
  // dst.dtype. Unimplemented where the backend has no such kernel: callers then read the
  // values through host memory.
  virtual Status FillSynthetic(const SyntheticFill& fill, TensorView dst) {
    return UnimplementedError("this backend generates no synthetic weights in place");
  }

  // out[i, :] = table[ids[i], :]
  virtual void Embed(TensorView table, std::span<const int32_t> ids, TensorView out) = 0;
  // out = x / rms(x) * w, per row; w: [1, cols]
  virtual void RmsNorm(TensorView x, TensorView w, float eps, TensorView out) = 0;
  // acc += x
  virtual void Add(TensorView acc, TensorView x) = 0;
  // x[r, :] += bias[0, :] for every row r; bias f32 [1, x.cols].
  virtual void AddBias(TensorView x, TensorView bias) = 0;
  // out[n, m] = x[n, k] * w[m, k]^T
  virtual void MatMul(TensorView x, TensorView w, TensorView out) = 0;
  // Optional second copy of a weight in its GGUF quantization (rows of blocks), for memory-bound
  // products with few rows (decode). Backends that keep none answer false / Unimplemented.
  virtual bool WantsQuantizedWeights() const { return false; }
  // Row count from which products are tuned on first use per power-of-two bucket of rows (a
  // one-time cost the engine's warm-up takes before serving); 0 when nothing is tuned.
  virtual int64_t TunedMinRows() const { return 0; }
  virtual StatusOr<Buffer> UploadQuantized(uint32_t ggml_type, const uint8_t* rows, int64_t n_rows,
                                           int64_t cols) {
    return UnimplementedError("this backend keeps no quantized weights");
  }
  // MatMul where `wq` (may be null) is w's quantized copy from UploadQuantized.
  virtual void MatMulQ(TensorView x, TensorView w, const Buffer* wq, TensorView out) { MatMul(x, w, out); }
  // Rotates the first rope_dim dims of each head of x [n, n_heads * head_dim] in place.
  virtual void Rope(TensorView x, int n_heads, int head_dim, std::span<const int32_t> positions,
                    const RopeTable& rope) = 0;
  // out[n, f] = silu(gate_up[n, f]) * gate_up[n, f + ff]  with gate_up [n, 2 * ff]
  virtual void SwiGlu(TensorView gate_up, TensorView out) = 0;
  // dst[i, :] = src[rows[i], :]; dst may share src's memory when rows[i] >= i for all i
  // (in-place compaction with increasing rows, as pruning does).
  virtual void GatherRows(TensorView src, std::span<const int32_t> rows, TensorView dst) = 0;

  // Writes k, v [n, n_kv_heads * head_dim] rows of each sequence at token slots
  // [n_past, n_past + n_rows) of its block table.
  virtual void WriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                       TensorView k, TensorView v) = 0;
  // Optional: the batch of every layer of the coming forward pass (layers[l] as WriteKv /
  // Attention will see it at layer l), so a device backend can send all layers' block tables in
  // one copy instead of one per layer. Purely a hint; the ops work without it.
  virtual void PrepareLayers(const kv::KvStore& kv, std::span<const std::vector<AttnSeq>> layers,
                             const AttnShape& shape) {}
  // ---- Layer-level ops ---------------------------------------------------------------------
  // The parts of a layer a backend may run fused. The defaults compose the primitives above;
  // a backend overrides one to fuse inside it (CUDA: bench/cuda-decode.md, cuda-prefill.md). A
  // new fusion goes inside one of these, not into a new virtual.

  // End of a block: acc += x (the residual stream), then out = RmsNorm(acc, w).
  virtual void AddRmsNorm(TensorView acc, TensorView x, TensorView w, float eps, TensorView out) {
    Add(acc, x);
    RmsNorm(acc, w, eps, out);
  }
  // Attention input: Rope over q's n_heads and k's n_kv_heads (in place), then WriteKv of the
  // rotated k and v (a layer without pruning; with pruning the engine scores between the two).
  virtual void RopeWriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                           TensorView q, TensorView k, TensorView v, std::span<const int32_t> positions,
                           const RopeTable& rope) {
    Rope(q, shape.n_heads, shape.head_dim, positions, rope);
    Rope(k, shape.n_kv_heads, shape.head_dim, positions, rope);
    WriteKv(kv, seqs, shape, k, v);
  }
  // The SwiGLU MLP after its norm: out = SwiGlu(x w.gate_up^T) w.down^T.
  virtual void Mlp(TensorView x, const MlpWeights& w, const MlpScratch& scratch, TensorView out);

  // SlimInfer block scores of one sequence's rows [row_begin, row_begin + n_rows) of the
  // post-RoPE q [n, n_heads * head_dim] and k [n, n_kv_heads * head_dim] (definition and CPU
  // reference: engine/pruning/block_scorer.h): the paper's |mean q . mean k| per token unit, or
  // with `attention` the softmax attention mass the window's queries give each unit. Returns
  // ceil(n_rows / block_tokens) scores.
  virtual Status ScoreBlocks(TensorView q, TensorView k, const AttnShape& shape, int32_t row_begin,
                             int32_t n_rows, int block_tokens, int unit_tokens, int query_window, bool attention,
                             std::vector<float>* block_scores) = 0;
  // ScoreBlocks in two halves, so that a decode step's selection need not hold the engine
  // thread while the device catches up: BeginScoreBlocks queues the scoring under `slot` (a
  // small index, one per sequence of a pass; a slot's earlier scores are dropped) and returns
  // at once; EndScoreBlocks returns that slot's scores, waiting for them, and frees the slot.
  // q and k may be overwritten once Begin returns. This default scores at Begin.
  virtual Status BeginScoreBlocks(int slot, TensorView q, TensorView k, const AttnShape& shape, int32_t row_begin,
                                  int32_t n_rows, int block_tokens, int unit_tokens, int query_window,
                                  bool attention);
  virtual Status EndScoreBlocks(int slot, std::vector<float>* block_scores);
  // Per-unit mean keys of the first n_tokens tokens stored in `table` (the decode KV
  // selection's key summaries; reference: UnitMeanKeys in engine/pruning/decode_selection.h):
  // out [ceil(n_tokens / unit_tokens), n_kv_heads * head_dim] in act_dtype, row u the mean of
  // K over tokens [u * unit, min((u + 1) * unit, n_tokens)), KV head g in columns
  // [g * head_dim, (g + 1) * head_dim). unit_tokens divides the block size. This default
  // downloads the blocks and averages on the host.
  virtual Status KeyUnitMeans(const kv::KvStore& kv, const kv::LayerTable& table, const AttnShape& shape,
                              int32_t n_tokens, int unit_tokens, TensorView out);
  // The first n_tokens keys stored in `table` on the host, f32 [n_tokens, n_kv_heads * head_dim]
  // (KV head g in columns [g * head_dim, (g + 1) * head_dim)), downloaded block by block.
  Status HostKeys(const kv::KvStore& kv, const kv::LayerTable& table, const AttnShape& shape, int32_t n_tokens,
                  std::vector<float>* keys);
  // Causal GQA attention: row r of sequence s (its token index n_past + r) attends to that
  // sequence's tokens [0, n_past + r]. q, out: [n, n_heads * head_dim].
  virtual void Attention(const kv::KvStore& kv, std::span<const AttnSeq> seqs,
                         const AttnShape& shape, TensorView q, TensorView out) = 0;
  // Per row i of logits [n, vocab] (f32) the summary of requests[i] (engine/sampler/
  // logits_summary.h: penalties, max, softmax normalizer at inv_t, the k best; SummarizeLogits
  // there is the reference) into (*out)[i], so that a sampler can often skip downloading the row.
  // A request with k == 0 leaves its summary empty. The logits are unchanged afterwards (a
  // backend may penalize in place and restore). This default downloads the rows and runs the
  // host reference.
  virtual Status SummarizeLogits(TensorView logits, std::span<const SummaryRequest> requests,
                                 std::vector<LogitsSummary>* out);

  // Launch graphs: the ops of a pass between BeginGraphPass (true when the backend records
  // this pass) and EndGraphPass may be recorded and launched as a few graphs, in the same
  // order; GraphBoundary marks where launching what was recorded so far may pay (a layer's
  // end). EndGraphPass returns the first failure to record or launch, in which case some of the
  // pass's work did not run and the caller reruns it (the backend then records no more passes).
  // Backends without graphs record nothing.
  virtual bool BeginGraphPass() { return false; }
  virtual void GraphBoundary() {}
  virtual Status EndGraphPass() { return OkStatus(); }

  // Per-op device timings for benchmarks: while on, the backend times each op (CUDA events);
  // TakeProfile waits for queued work and returns and clears the totals (largest first).
  // Backends without timers return nothing.
  virtual void SetProfiling(bool on) {}
  virtual std::vector<OpTime> TakeProfile() { return {}; }

 private:
  // The default Begin/EndScoreBlocks: per slot, the scores Begin computed (or none).
  std::vector<std::optional<std::vector<float>>> begun_scores_;
};

// The backend's choices, parsed from their flag spellings once at the edge (ParseKvCache & co.
// below); each backend refuses the values it cannot honour, naming them.
enum class KvCache { kAuto, kF32, kF16, kBf16 };  // auto: f32 on CPU, bf16 on CUDA
enum class AttentionKernel { kAuto, kMma, kWgmma };
enum class Toggle { kAuto, kOn, kOff };

struct BackendOptions {
  Device device = Device::kCpu;
  int threads = 0;       // CPU: 0 = all cores
  bool profile = false;  // start with per-op timing on (SetProfiling)
  // CUDA prefill attention kernel: auto (wgmma on sm_90a for head size 128, else mma.sync),
  // mma (mma.sync everywhere) or wgmma (fails on devices without it).
  AttentionKernel cuda_attention = AttentionKernel::kAuto;
  // KV cache element type: f32 or f16 on the CPU (f16 halves the cache and the bytes decode
  // attention reads, as llama.cpp's default), bf16 on CUDA.
  KvCache kv_cache = KvCache::kAuto;
  // CUDA few-row products (decode, <= 8 rows): auto (our GEMV kernel, with SwiGLU fused into the
  // down projection for <= 4 rows, where it is faster: bench/cuda-decode.md), on (the kernel and
  // the fusion wherever they apply) or off (SwiGlu + cuBLAS only).
  Toggle cuda_gemv = Toggle::kAuto;
  // CUDA products of >= 256 rows (prefill): auto/on time cublasGemmEx and cuBLASLt's candidate
  // algorithms on the first product of each shape and size bucket and keep the fastest; off
  // leaves every choice to cublasGemmEx.
  Toggle cuda_gemm_tune = Toggle::kAuto;
  // CUDA decode passes launched as graphs (BeginGraphPass; cuda/stream_graphs.h): auto/on
  // record them, off launches every op from the host.
  Toggle cuda_graphs = Toggle::kAuto;
  // CUDA decode kernels launched with programmatic dependent launch (each may start while the one
  // before it runs): auto/on, or off (plain stream order). One setting for the process.
  Toggle cuda_pdl = Toggle::kAuto;
};

// Flag spellings: "auto" "f32" "f16" "bf16" / "auto" "mma" "wgmma" / "auto" "on" "off".
// InvalidArgument naming the value and the known ones.
StatusOr<KvCache> ParseKvCache(std::string_view s);
StatusOr<AttentionKernel> ParseAttentionKernel(std::string_view s);
StatusOr<Toggle> ParseToggle(std::string_view what, std::string_view s);
std::string_view KvCacheName(KvCache k);

// CPU always; CUDA when built with it and a device is present (Unavailable otherwise).
StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options);

}  // namespace slim
