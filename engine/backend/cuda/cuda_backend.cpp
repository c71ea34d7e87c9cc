// CudaBackend: allocation, transfers, staging and the dispatch of each Backend op to its
// launcher (kernels in the .cu files beside this one) or to cuBLAS.
#include "engine/backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "engine/backend/cuda/block_scores.h"
#include "engine/backend/cuda/convert.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/decode_attention.h"
#include "engine/backend/cuda/embed_gather.h"
#include "engine/backend/cuda/flash_attention.h"
#include "engine/backend/cuda/gemv.h"
#include "engine/backend/cuda/kv_write.h"
#include "engine/backend/cuda/mapped_copy.h"
#include "engine/backend/cuda/paged_kv.h"
#include "engine/backend/cuda/rms_norm.h"
#include "engine/backend/cuda/rope.h"
#include "engine/backend/cuda/sample_topk.h"
#include "engine/backend/cuda/swiglu.h"

namespace slim::cuda {

namespace {

constexpr size_t kCublasWorkspace = size_t{32} << 20;  // cuBLAS's recommendation for Hopper
constexpr size_t kStagerBytes = size_t{16} << 20;
constexpr int kDecodeMaxRows = 8;  // sequences with more new rows take the flash kernel
// Stager cache slots.
enum Slot : int { kSlotIds = 0, kSlotRope, kSlotAttn, kSlotGather };

std::string Shape(const TensorView& t) { return std::to_string(t.rows) + "x" + std::to_string(t.cols); }

}  // namespace

// ---- profiling -----------------------------------------------------------------------------

class CudaBackend::OpScope {
 public:
  OpScope(CudaBackend* b, const char* op, const std::string& detail = {}) : b_(b) {
    if (!b_->profiling_) return;
    pending_.op = detail.empty() ? std::string(op) : std::string(op) + "[" + detail + "]";
    pending_.begin = b_->NewEvent();
    pending_.end = b_->NewEvent();
    if (pending_.begin != nullptr) (void)cudaEventRecord(pending_.begin, b_->stream_);
  }
  ~OpScope() {
    if (!b_->profiling_ || pending_.begin == nullptr || pending_.end == nullptr) return;
    (void)cudaEventRecord(pending_.end, b_->stream_);
    b_->pending_.push_back(pending_);
  }

 private:
  CudaBackend* b_;
  Pending pending_{};
};

cudaEvent_t CudaBackend::NewEvent() {
  if (!free_events_.empty()) {
    cudaEvent_t e = free_events_.back();
    free_events_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  if (cudaEventCreate(&e) != cudaSuccess) return nullptr;
  return e;
}

std::vector<OpTime> CudaBackend::TakeProfile() {
  std::vector<OpTime> out;
  if (cudaStreamSynchronize(stream_) != cudaSuccess) return out;
  std::map<std::string, OpTime> by_op;
  for (const Pending& p : pending_) {
    float ms = 0.0f;
    if (cudaEventElapsedTime(&ms, p.begin, p.end) == cudaSuccess) {
      OpTime& t = by_op[p.op];
      t.op = p.op;
      t.ms += ms;
      ++t.calls;
    }
    free_events_.push_back(p.begin);
    free_events_.push_back(p.end);
  }
  pending_.clear();
  for (auto& [k, v] : by_op) out.push_back(v);
  std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.ms > b.ms; });
  return out;
}

// ---- lifecycle -----------------------------------------------------------------------------

StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const BackendOptions& options) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    (void)cudaGetLastError();  // clear the error state
    return UnavailableError(std::string("no CUDA device: ") +
                            (e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none"));
  }
  std::unique_ptr<CudaBackend> b(new CudaBackend());
  SLIM_RETURN_IF_ERROR(b->Init(options));
  return b;
}

Status CudaBackend::Init(const BackendOptions& options) {
  device_ = 0;
  CUDA_CHECK(cudaSetDevice(device_));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  if (prop.major < 8) {
    return UnavailableError(std::string("CUDA device ") + prop.name + " is sm_" + std::to_string(prop.major) +
                            std::to_string(prop.minor) + "; the CUDA backend needs sm_80 or newer");
  }
  name_ = prop.name;
  n_sms_ = prop.multiProcessorCount;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUBLAS_CHECK(cublasCreate(&cublas_));
  CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  CUDA_CHECK(cudaMalloc(&cublas_ws_, kCublasWorkspace));
  CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_ws_, kCublasWorkspace));
  SLIM_RETURN_IF_ERROR(stager_.Init(kStagerBytes, stream_));
  profiling_ = options.profile;
  gemv_ = options.cuda_gemv;
  SLIM_RETURN_IF_ERROR(
      gemm_.Init(stream_, cublas_, cublas_ws_, kCublasWorkspace, options.cuda_gemm_tune != Toggle::kOff));
  if (options.kv_cache != KvCache::kAuto && options.kv_cache != KvCache::kBf16) {
    return InvalidArgumentError("cuda KV cache type '" + std::string(KvCacheName(options.kv_cache)) +
                                "' (known: auto, bf16)");
  }
  if (options.cuda_attention == AttentionKernel::kWgmma && !FlashSm90Available()) {
    return UnavailableError(std::string("cuda attention 'wgmma' needs an sm_90 device (this is ") + prop.name + ")");
  }
  flash_kernel_ = options.cuda_attention == AttentionKernel::kMma     ? FlashKernel::kMmaSync
                  : options.cuda_attention == AttentionKernel::kWgmma ? FlashKernel::kWgmma
                                                                      : FlashKernel::kAuto;
  return OkStatus();
}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) (void)cudaStreamSynchronize(stream_);
  for (const Pending& p : pending_) {
    (void)cudaEventDestroy(p.begin);
    (void)cudaEventDestroy(p.end);
  }
  for (cudaEvent_t e : free_events_) (void)cudaEventDestroy(e);
  if (cublas_ != nullptr) (void)cublasDestroy(cublas_);
  if (cublas_ws_ != nullptr) (void)cudaFree(cublas_ws_);
  if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
}

std::string CudaBackend::Describe() const {
  return "cuda (" + name_ + ", " + std::to_string(n_sms_) + " SMs; bf16 weights/activations/KV, fp32 accumulation" +
         (gemv_ == Toggle::kOff ? "; no GEMV kernel" : gemv_ == Toggle::kOn ? "; GEMV kernel everywhere" : "") + ")";
}

void CudaBackend::Note(const Status& s) {
  if (!s.ok() && error_.ok()) error_ = s;
}

Status CudaBackend::TakeError() {
  Status s = error_;
  error_ = OkStatus();
  return s;
}

// ---- memory and transfers ----------------------------------------------------------------------

StatusOr<Buffer> CudaBackend::Alloc(DType dtype, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) return InvalidArgumentError("cuda alloc: negative shape");
  const size_t bytes = static_cast<size_t>(rows) * static_cast<size_t>(cols) * DTypeBytes(dtype);
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 256));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return ResourceExhaustedError("cuda alloc: cannot allocate " + std::to_string(bytes) + " bytes (" +
                                  Shape(TensorView{nullptr, dtype, Device::kCuda, rows, cols, cols}) + " " +
                                  DTypeName(dtype) + "): " + cudaGetErrorString(e));
  }
  // Zero-filled: the KV arena is one of these, and the wgmma attention kernel loads whole
  // 64-token blocks, so slots never written must hold finite values (0 * NaN would leak into P V).
  if (const cudaError_t z = cudaMemsetAsync(p, 0, bytes, stream_); z != cudaSuccess) {
    (void)cudaFree(p);
    (void)cudaGetLastError();
    return InternalError(std::string("cuda alloc: cudaMemsetAsync: ") + cudaGetErrorString(z));
  }
  TensorView v;
  v.data = p;
  v.dtype = dtype;
  v.device = Device::kCuda;
  v.rows = rows;
  v.cols = cols;
  v.stride = cols;
  return Buffer(v, [](void* q) { (void)cudaFree(q); });
}

Status CudaBackend::Upload(const float* host, TensorView dst) {
  SLIM_RETURN_IF_ERROR(TakeError());
  if (dst.rows == 0 || dst.cols == 0) return OkStatus();
  if (dst.dtype == DType::kF32) {
    CUDA_CHECK(cudaMemcpy2DAsync(dst.data, dst.stride * 4, host, dst.cols * 4, dst.cols * 4, dst.rows,
                                 cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    return OkStatus();
  }
  // Through an f32 device buffer, in chunks of rows, converted on the device.
  const int64_t chunk_rows = std::max<int64_t>(1, (int64_t{16} << 20) / dst.cols);
  SLIM_ASSIGN_OR_RETURN(void* tmp, convert_scratch_.Get(static_cast<size_t>(std::min(chunk_rows, dst.rows) * dst.cols) * 4));
  for (int64_t r = 0; r < dst.rows; r += chunk_rows) {
    const int64_t n = std::min(chunk_rows, dst.rows - r);
    CUDA_CHECK(cudaMemcpyAsync(tmp, host + r * dst.cols, static_cast<size_t>(n * dst.cols) * 4, cudaMemcpyHostToDevice,
                               stream_));
    const TensorView part = dst.Rows(r, n);
    SLIM_RETURN_IF_ERROR(
        LaunchConvert(tmp, DType::kF32, dst.cols, part.data, part.dtype, part.stride, n, dst.cols, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // the next chunk reuses tmp's host source pages
  }
  return OkStatus();
}

Status CudaBackend::Download(TensorView src, float* host) {
  SLIM_RETURN_IF_ERROR(TakeError());
  if (src.rows == 0 || src.cols == 0) return OkStatus();
  const void* from = src.data;
  int64_t pitch = src.stride;
  if (src.dtype != DType::kF32) {
    SLIM_ASSIGN_OR_RETURN(void* tmp, convert_scratch_.Get(static_cast<size_t>(src.rows * src.cols) * 4));
    SLIM_RETURN_IF_ERROR(LaunchConvert(src.data, src.dtype, src.stride, tmp, DType::kF32, src.cols, src.rows, src.cols,
                                       stream_));
    from = tmp;
    pitch = src.cols;
  }
  CUDA_CHECK(cudaMemcpy2DAsync(host, src.cols * 4, from, pitch * 4, src.cols * 4, src.rows, cudaMemcpyDeviceToHost,
                               stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  return OkStatus();
}

Status CudaBackend::Sync() {
  SLIM_RETURN_IF_ERROR(TakeError());
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  return OkStatus();
}

Status CudaBackend::FillSynthetic(const SyntheticFill& fill, TensorView dst) {
  SLIM_RETURN_IF_ERROR(TakeError());
  return LaunchSyntheticFill(fill, dst.data, dst.dtype, dst.stride, dst.rows, dst.cols, stream_);
}

// ---- element-wise ops ----------------------------------------------------------------------

void CudaBackend::Embed(TensorView table, std::span<const int32_t> ids, TensorView out) {
  OpScope scope(this, "Embed");
  auto dev = stager_.StageCached(kSlotIds, ids.data(), ids.size_bytes());
  if (!dev.ok()) return Note(dev.status());
  Note(LaunchEmbed(table.data, table.dtype, table.stride, table.rows, static_cast<const int32_t*>(*dev), out.data,
                   out.dtype, out.stride, out.rows, out.cols, stream_));
}

void CudaBackend::RmsNorm(TensorView x, TensorView w, float eps, TensorView out) {
  OpScope scope(this, "RmsNorm");
  if (w.dtype != DType::kF32) return Note(InvalidArgumentError("cuda RmsNorm: weights must be f32"));
  Note(LaunchRmsNorm(x.data, x.dtype, x.stride, w.as<float>(), eps, out.data, out.dtype, out.stride, x.rows, x.cols,
                     stream_));
}

void CudaBackend::Add(TensorView acc, TensorView x) {
  OpScope scope(this, "Add");
  Note(LaunchAdd(acc.data, acc.dtype, acc.stride, x.data, x.dtype, x.stride, acc.rows, acc.cols, stream_));
}

void CudaBackend::AddBias(TensorView x, TensorView bias) {
  OpScope scope(this, "AddBias");
  if (bias.dtype != DType::kF32 || bias.rows != 1 || bias.cols != x.cols) {
    return Note(InvalidArgumentError("cuda AddBias: bias must be f32 [1, x.cols]"));
  }
  // Row stride 0: every row of x adds the same bias row.
  Note(LaunchAdd(x.data, x.dtype, x.stride, bias.data, bias.dtype, /*x_stride=*/0, x.rows, x.cols, stream_));
}

void CudaBackend::AddRmsNorm(TensorView acc, TensorView x, TensorView w, float eps, TensorView out) {
  OpScope scope(this, "AddRmsNorm");
  if (w.dtype != DType::kF32) return Note(InvalidArgumentError("cuda AddRmsNorm: weights must be f32"));
  Note(LaunchAddRmsNorm(acc.data, acc.dtype, acc.stride, x.data, x.dtype, x.stride, w.as<float>(), eps, out.data,
                        out.dtype, out.stride, acc.rows, acc.cols, stream_));
}

StatusOr<const int32_t*> CudaBackend::StageRope(std::span<const int32_t> positions, const RopeTable& rope) {
  // One staged buffer: [length of inv_freq][inv_freq][positions].
  const size_t nf = rope.inv_freq.size();
  host_i32_.resize(1 + nf + positions.size());
  host_i32_[0] = static_cast<int32_t>(nf);
  std::memcpy(host_i32_.data() + 1, rope.inv_freq.data(), nf * sizeof(float));
  std::memcpy(host_i32_.data() + 1 + nf, positions.data(), positions.size_bytes());
  SLIM_ASSIGN_OR_RETURN(const void* dev,
                        stager_.StageCached(kSlotRope, host_i32_.data(), host_i32_.size() * sizeof(int32_t)));
  return static_cast<const int32_t*>(dev);
}

void CudaBackend::Rope(TensorView x, int n_heads, int head_dim, std::span<const int32_t> positions,
                       const RopeTable& rope) {
  OpScope scope(this, "Rope");
  auto dev = StageRope(positions, rope);
  if (!dev.ok()) return Note(dev.status());
  const int32_t* base = *dev;
  const size_t nf = rope.inv_freq.size();
  Note(LaunchRope(x.data, x.dtype, x.stride, x.rows, n_heads, head_dim, rope.rope_dim, base + 1 + nf,
                  reinterpret_cast<const float*>(base + 1), stream_));
}

void CudaBackend::SwiGlu(TensorView gate_up, TensorView out) {
  OpScope scope(this, "SwiGlu");
  Note(LaunchSwiGlu(gate_up.data, gate_up.dtype, gate_up.stride, out.data, out.dtype, out.stride, out.rows, out.cols,
                    stream_));
}

void CudaBackend::GatherRows(TensorView src, std::span<const int32_t> rows, TensorView dst) {
  OpScope scope(this, "GatherRows");
  Note(DoGatherRows(src, rows, dst));
}

Status CudaBackend::DoGatherRows(TensorView src, std::span<const int32_t> rows, TensorView dst) {
  if (src.dtype != dst.dtype || src.cols != dst.cols || static_cast<int64_t>(rows.size()) != dst.rows) {
    return InvalidArgumentError("cuda GatherRows: shapes or dtypes differ");
  }
  if (rows.empty()) return OkStatus();
  SLIM_ASSIGN_OR_RETURN(const void* dev, stager_.StageCached(kSlotGather, rows.data(), rows.size_bytes()));
  const int64_t eb = static_cast<int64_t>(DTypeBytes(src.dtype)), row_bytes = src.cols * eb;
  const auto* s0 = static_cast<const uint8_t*>(src.data);
  const auto* s1 = s0 + (src.rows > 0 ? ((src.rows - 1) * src.stride + src.cols) * eb : 0);
  const auto* d0 = static_cast<const uint8_t*>(dst.data);
  const auto* d1 = d0 + ((dst.rows - 1) * dst.stride + dst.cols) * eb;
  const bool overlap = d0 < s1 && s0 < d1;
  if (!overlap) {
    return LaunchGatherRows(src.data, src.stride * eb, static_cast<const int32_t*>(dev), dst.data, dst.stride * eb,
                            dst.rows, row_bytes, stream_);
  }
  // In place (pruning's compaction): rows read by one block may be written by another, so go
  // through a scratch buffer.
  SLIM_ASSIGN_OR_RETURN(void* tmp, gather_scratch_.Get(static_cast<size_t>(dst.rows * row_bytes)));
  SLIM_RETURN_IF_ERROR(LaunchGatherRows(src.data, src.stride * eb, static_cast<const int32_t*>(dev), tmp, row_bytes,
                                        dst.rows, row_bytes, stream_));
  CUDA_CHECK(cudaMemcpy2DAsync(dst.data, dst.stride * eb, tmp, row_bytes, row_bytes, dst.rows,
                               cudaMemcpyDeviceToDevice, stream_));
  return OkStatus();
}

// ---- GEMM ----------------------------------------------------------------------------------

void CudaBackend::MatMul(TensorView x, TensorView w, TensorView out) {
  OpScope scope(this, "MatMul", profiling_ ? std::to_string(x.rows) + "x" + std::to_string(w.rows) + "x" +
                                                  std::to_string(w.cols)
                                            : std::string());
  Note(DoMatMul(x, w, out));
}

namespace {
cudaDataType_t CudaType(DType t) { return t == DType::kBF16 ? CUDA_R_16BF : t == DType::kF16 ? CUDA_R_16F : CUDA_R_32F; }
}  // namespace

Status CudaBackend::DoMatMul(TensorView x, TensorView w, TensorView out) {
  if (x.cols != w.cols || out.rows != x.rows || out.cols != w.rows) {
    return InvalidArgumentError("cuda MatMul: shapes " + Shape(x) + " x " + Shape(w) + "^T -> " + Shape(out));
  }
  if (x.dtype != w.dtype || (x.dtype != DType::kBF16 && x.dtype != DType::kF32) ||
      (out.dtype != DType::kBF16 && out.dtype != DType::kF32)) {
    return InvalidArgumentError(std::string("cuda MatMul: unsupported dtypes ") + DTypeName(x.dtype) + " x " +
                                DTypeName(w.dtype) + " -> " + DTypeName(out.dtype));
  }
  if (x.rows == 0 || w.rows == 0) return OkStatus();
  // auto = on here: cuBLAS alone streams the 8B model's larger matrices a little faster, yet
  // whole decode steps measured faster with the kernel everywhere (bench/cuda-decode.md).
  if (gemv_ != Toggle::kOff && x.rows <= kGemvMaxRows && x.dtype == DType::kBF16) {
    const GemvArgs g{.x = x.data, .x_stride = x.stride, .w = w.data, .w_stride = w.stride, .out = out.data,
                     .out_dtype = out.dtype, .out_stride = out.stride, .n = x.rows, .m = w.rows, .k = w.cols};
    if (GemvSupports(g)) return LaunchGemv(g, stream_);
  }
  return gemm_.Run(GemmArgs{.w = w.data, .w_type = CudaType(w.dtype), .ldw = w.stride, .x = x.data,
                            .x_type = CudaType(x.dtype), .ldx = x.stride, .out = out.data,
                            .out_type = CudaType(out.dtype), .ldo = out.stride, .m = w.rows, .n = x.rows,
                            .k = x.cols});
}

void CudaBackend::SwiGluMatMul(TensorView gate_up, TensorView act, TensorView w, const Buffer* wq, TensorView out) {
  const GemvArgs g{.x = gate_up.data, .x_stride = gate_up.stride, .swiglu = true, .w = w.data, .w_stride = w.stride,
                   .out = out.data, .out_dtype = out.dtype, .out_stride = out.stride, .n = gate_up.rows,
                   .m = w.rows, .k = w.cols};
  // auto: fused for <= 4 rows (8B down projection, one row: 33.8 vs 38.8 us for SwiGlu + cuBLAS;
  // eight rows: 50.9 vs 39.5).
  const bool want = gemv_ == Toggle::kOn || (gemv_ == Toggle::kAuto && gate_up.rows <= 4);
  const bool fused = want && gate_up.dtype == DType::kBF16 && w.dtype == DType::kBF16 &&
                     gate_up.cols == 2 * w.cols && out.rows == gate_up.rows && out.cols == w.rows && GemvSupports(g);
  if (!fused) return Backend::SwiGluMatMul(gate_up, act, w, wq, out);
  OpScope scope(this, "SwiGluMatMul", profiling_ ? std::to_string(gate_up.rows) + "x" + std::to_string(w.rows) + "x" +
                                                        std::to_string(w.cols)
                                                  : std::string());
  Note(LaunchGemv(g, stream_));
}

// ---- KV and attention ----------------------------------------------------------------------

namespace {

// Host image of a batch's PagedSeq array followed by the block ids each sequence needs.
void BuildBatch(const kv::KvStore& kv, std::span<const AttnSeq> seqs, std::vector<int32_t>* out) {
  const int bt = kv.layout().block_tokens;
  out->assign(seqs.size() * 4, 0);
  for (size_t i = 0; i < seqs.size(); ++i) {
    const AttnSeq& s = seqs[i];
    const size_t need = static_cast<size_t>((s.n_past + s.n_rows + bt - 1) / bt);
    PagedSeq ps;
    ps.row_begin = s.row_begin;
    ps.n_rows = s.n_rows;
    ps.n_past = s.n_past;
    ps.table_offset = static_cast<int32_t>(out->size() - seqs.size() * 4);
    std::memcpy(out->data() + i * 4, &ps, sizeof ps);
    out->insert(out->end(), s.table->blocks.begin(), s.table->blocks.begin() + static_cast<std::ptrdiff_t>(need));
  }
}

PagedKv MakePagedKv(const kv::KvStore& kv, const AttnShape& shape, const void* dev_batch, int n_seqs) {
  const kv::KvLayout& L = kv.layout();
  const kv::GpuView view = kv.View();
  PagedKv p;
  p.arena = view.base;
  p.n_blocks = view.n_blocks;
  p.block_bytes = static_cast<int64_t>(view.block_bytes);
  p.head_bytes = static_cast<int64_t>(view.head_bytes);
  p.n_kv_heads = shape.n_kv_heads;
  p.head_dim = shape.head_dim;
  p.block_tokens = L.block_tokens;
  p.n_seqs = n_seqs;
  p.seqs = static_cast<const PagedSeq*>(dev_batch);
  p.tables = static_cast<const int32_t*>(dev_batch) + 4 * n_seqs;
  return p;
}

Status CheckKv(const kv::KvStore& kv, const AttnShape& shape) {
  const kv::KvLayout& L = kv.layout();
  if (L.elem_bytes != 2 || L.n_kv_heads != shape.n_kv_heads || L.head_dim != shape.head_dim) {
    return InvalidArgumentError("cuda KV: the store's layout must be bf16 with the model's KV heads and head size");
  }
  return OkStatus();
}

}  // namespace

CudaBackend::AttnStaging CudaBackend::BuildAttentionImage(const kv::KvStore& kv, std::span<const AttnSeq> seqs,
                                                         const AttnShape& shape, std::vector<int32_t>* image) {
  // One buffer: [PagedSeq x n][block tables][flash tiles][decode items].
  const int group = shape.n_heads / shape.n_kv_heads;
  const bool flash_ok = FlashSupports(shape.head_dim, kv.layout().block_tokens);
  const int n = static_cast<int>(seqs.size());
  AttnStaging st;
  BuildBatch(kv, seqs, image);
  struct Work {
    int64_t cost;
    FlashTile t;
  };
  std::vector<Work> tiles;
  std::vector<DecodeItem> items;
  for (int i = 0; i < n; ++i) {
    const AttnSeq& s = seqs[static_cast<size_t>(i)];
    if (s.n_rows <= 0) continue;
    if (flash_ok && (s.n_rows > kDecodeMaxRows || !DecodeSupports(shape.head_dim, group))) {
      for (int r0 = 0; r0 < s.n_rows; r0 += kFlashRows) {
        tiles.push_back({int64_t{s.n_past} + r0 + std::min(kFlashRows, s.n_rows - r0), FlashTile{i, r0}});
      }
    } else {
      for (int r = 0; r < s.n_rows; ++r) items.push_back(DecodeItem{i, r});
      st.max_decode_keys = std::max(st.max_decode_keys, s.n_past + s.n_rows);
    }
  }
  // Heaviest query tiles first: the causal tail of a long prompt is the critical path.
  std::stable_sort(tiles.begin(), tiles.end(), [](const Work& a, const Work& b) { return a.cost > b.cost; });
  st.tiles_at = image->size();
  for (const Work& w : tiles) {
    image->push_back(w.t.seq);
    image->push_back(w.t.row0);
  }
  st.items_at = image->size();
  for (const DecodeItem& it : items) {
    image->push_back(it.seq);
    image->push_back(it.row);
  }
  st.n_tiles = static_cast<int>(tiles.size());
  st.n_items = static_cast<int>(items.size());
  return st;
}

StatusOr<CudaBackend::AttnStaging> CudaBackend::StageAttention(const kv::KvStore& kv, std::span<const AttnSeq> seqs,
                                                               const AttnShape& shape) {
  AttnStaging st = BuildAttentionImage(kv, seqs, shape, &host_i32_);
  for (const Prepared& p : prepared_) {
    if (p.lap == stager_.lap() && p.image == host_i32_) {
      st.device = p.device;
      return st;
    }
  }
  SLIM_ASSIGN_OR_RETURN(st.device, stager_.StageCached(kSlotAttn, host_i32_.data(), host_i32_.size() * sizeof(int32_t)));
  return st;
}

void CudaBackend::PrepareLayers(const kv::KvStore& kv, std::span<const std::vector<AttnSeq>> layers,
                                const AttnShape& shape) {
  prepared_.resize(layers.size());
  std::vector<int32_t> all;
  std::vector<size_t> at;
  for (size_t l = 0; l < layers.size(); ++l) {
    (void)BuildAttentionImage(kv, layers[l], shape, &prepared_[l].image);
    at.push_back(all.size());
    all.insert(all.end(), prepared_[l].image.begin(), prepared_[l].image.end());
    all.resize((all.size() + 3) / 4 * 4);  // 16-byte aligned starts
  }
  auto dev = stager_.Stage(all.data(), all.size() * sizeof(int32_t));
  if (!dev.ok()) {  // not fatal: the ops stage their own copies
    prepared_.clear();
    return;
  }
  for (size_t l = 0; l < layers.size(); ++l) {
    prepared_[l].device = static_cast<const int32_t*>(*dev) + at[l];
    prepared_[l].lap = stager_.lap();
  }
}

void CudaBackend::WriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape, TensorView k,
                          TensorView v) {
  OpScope scope(this, "WriteKv");
  Note(DoWriteKv(kv, seqs, shape, k, v));
}

Status CudaBackend::DoWriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                              TensorView k, TensorView v) {
  SLIM_RETURN_IF_ERROR(CheckKv(kv, shape));
  if (k.dtype != DType::kBF16 || v.dtype != DType::kBF16) return InvalidArgumentError("cuda WriteKv: k/v must be bf16");
  if (seqs.empty()) return OkStatus();
  // The staging Attention builds for the same batch: its leading PagedSeq array and tables are
  // what this kernel reads, and the Attention call that follows finds the copy in the cache.
  SLIM_ASSIGN_OR_RETURN(AttnStaging st, StageAttention(kv, seqs, shape));
  int max_rows = 0;
  for (const AttnSeq& s : seqs) max_rows = std::max(max_rows, s.n_rows);
  return LaunchWriteKv(MakePagedKv(kv, shape, st.device, static_cast<int>(seqs.size())), k.data, k.stride, v.data,
                       v.stride, max_rows, stream_);
}

void CudaBackend::RopeWriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                              TensorView q, TensorView k, TensorView v, std::span<const int32_t> positions,
                              const RopeTable& rope) {
  OpScope scope(this, "RopeWriteKv");
  Note(DoRopeWriteKv(kv, seqs, shape, q, k, v, positions, rope));
}

Status CudaBackend::DoRopeWriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                                  TensorView q, TensorView k, TensorView v, std::span<const int32_t> positions,
                                  const RopeTable& rope) {
  SLIM_RETURN_IF_ERROR(CheckKv(kv, shape));
  if (q.dtype != DType::kBF16 || k.dtype != DType::kBF16 || v.dtype != DType::kBF16) {
    return InvalidArgumentError("cuda RopeWriteKv: q/k/v must be bf16");
  }
  if (seqs.empty()) return OkStatus();
  SLIM_ASSIGN_OR_RETURN(const int32_t* rope_dev, StageRope(positions, rope));
  SLIM_ASSIGN_OR_RETURN(AttnStaging st, StageAttention(kv, seqs, shape));
  int max_rows = 0;
  for (const AttnSeq& s : seqs) max_rows = std::max(max_rows, s.n_rows);
  const size_t nf = rope.inv_freq.size();
  return LaunchRopeWriteKv(MakePagedKv(kv, shape, st.device, static_cast<int>(seqs.size())), q.data, q.stride,
                           shape.n_heads, k.data, k.stride, v.data, v.stride, max_rows, rope.rope_dim,
                           rope_dev + 1 + nf, reinterpret_cast<const float*>(rope_dev + 1), stream_);
}

void CudaBackend::Attention(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                            TensorView q, TensorView out) {
  OpScope scope(this, "Attention");
  Note(DoAttention(kv, seqs, shape, q, out));
}

Status CudaBackend::DoAttention(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                                TensorView q, TensorView out) {
  SLIM_RETURN_IF_ERROR(CheckKv(kv, shape));
  if (q.dtype != DType::kBF16 || out.dtype != DType::kBF16) {
    return InvalidArgumentError("cuda Attention: q/out must be bf16");
  }
  if (seqs.empty()) return OkStatus();
  const int group = shape.n_heads / shape.n_kv_heads;
  if (!FlashSupports(shape.head_dim, kv.layout().block_tokens) && !DecodeSupports(shape.head_dim, group)) {
    return UnimplementedError("cuda Attention: head_dim " + std::to_string(shape.head_dim) + " with " +
                              std::to_string(group) + " query heads per KV head is not supported");
  }
  SLIM_ASSIGN_OR_RETURN(AttnStaging st, StageAttention(kv, seqs, shape));
  const int n = static_cast<int>(seqs.size());
  const void* dev = st.device;
  const PagedKv pkv = MakePagedKv(kv, shape, dev, n);
  const auto* base = static_cast<const int32_t*>(dev);
  if (st.n_tiles > 0) {
    FlashParams p;
    p.kv = pkv;
    p.q = q.data;
    p.q_stride = q.stride;
    p.out = out.data;
    p.out_stride = out.stride;
    p.tiles = reinterpret_cast<const FlashTile*>(base + st.tiles_at);
    p.n_tiles = st.n_tiles;
    p.n_heads = shape.n_heads;
    p.scale = shape.scale;
    p.kernel = flash_kernel_;
    SLIM_RETURN_IF_ERROR(LaunchFlashAttention(p, stream_));
  }
  if (st.n_items > 0) {
    DecodeParams p;
    p.kv = pkv;
    p.q = q.data;
    p.q_stride = q.stride;
    p.out = out.data;
    p.out_stride = out.stride;
    p.items = reinterpret_cast<const DecodeItem*>(base + st.items_at);
    p.n_items = st.n_items;
    p.n_heads = shape.n_heads;
    p.scale = shape.scale;
    p.n_splits = DecodeSplits(p.n_items, shape.n_kv_heads, st.max_decode_keys, n_sms_, shape.head_dim,
                              kv.layout().block_tokens);
    p.chunks_per_split =
        DecodeChunksPerSplit(p.n_items, shape.n_kv_heads, st.max_decode_keys, n_sms_, shape.head_dim);
    const size_t parts = static_cast<size_t>(p.n_items) * shape.n_heads * p.n_splits;
    SLIM_ASSIGN_OR_RETURN(void* scratch, attn_scratch_.Get(parts * (shape.head_dim + 2) * sizeof(float)));
    p.part_o = static_cast<float*>(scratch);
    p.part_ml = p.part_o + parts * shape.head_dim;
    SLIM_RETURN_IF_ERROR(LaunchDecodeAttention(p, stream_));
  }
  return OkStatus();
}

// ---- pruning scores ------------------------------------------------------------------------

Status CudaBackend::ScoreBlocks(TensorView q, TensorView k, const AttnShape& shape, int32_t row_begin, int32_t n_rows,
                                int block_tokens, int unit_tokens, int query_window, bool attention,
                                std::vector<float>* block_scores) {
  OpScope scope(this, "ScoreBlocks");
  SLIM_RETURN_IF_ERROR(TakeError());
  if (q.dtype != k.dtype) return InvalidArgumentError("cuda ScoreBlocks: q and k dtypes differ");
  if (block_tokens <= 0 || unit_tokens <= 0 || block_tokens % unit_tokens != 0) {
    return InvalidArgumentError("cuda ScoreBlocks: unit_tokens must divide block_tokens");
  }
  const int64_t n_units = (int64_t{n_rows} + unit_tokens - 1) / unit_tokens;
  const int64_t n_blocks = (int64_t{n_rows} + block_tokens - 1) / block_tokens;
  block_scores->assign(static_cast<size_t>(n_blocks), 0.0f);
  if (n_rows == 0) return OkStatus();
  BlockScoreArgs a;
  const TensorView qs = q.Rows(row_begin, n_rows), ks = k.Rows(row_begin, n_rows);
  a.q = qs.data;
  a.q_stride = qs.stride;
  a.k = ks.data;
  a.k_stride = ks.stride;
  a.dtype = q.dtype;
  a.n_rows = n_rows;
  a.n_heads = shape.n_heads;
  a.n_kv_heads = shape.n_kv_heads;
  a.head_dim = shape.head_dim;
  a.unit_tokens = unit_tokens;
  a.query_window = query_window;
  a.attention = attention;
  SLIM_ASSIGN_OR_RETURN(void* scratch, score_scratch_.Get(BlockScoreScratchFloats(a) * sizeof(float)));
  AssignBlockScoreScratch(&a, static_cast<float*>(scratch));
  SLIM_RETURN_IF_ERROR(LaunchBlockScores(a, stream_));
  host_f32_.resize(static_cast<size_t>(n_units));
  CUDA_CHECK(cudaMemcpyAsync(host_f32_.data(), a.unit_scores, static_cast<size_t>(n_units) * sizeof(float),
                             cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (int64_t u = 0; u < n_units; ++u) {
    float& b = (*block_scores)[static_cast<size_t>(u * unit_tokens / block_tokens)];
    b = std::max(b, host_f32_[static_cast<size_t>(u)]);
  }
  return OkStatus();
}

Status CudaBackend::SummarizeLogits(TensorView logits, std::span<const SummaryRequest> requests,
                                    std::vector<LogitsSummary>* out) {
  OpScope scope(this, "SummarizeLogits");
  SLIM_RETURN_IF_ERROR(TakeError());
  if (logits.dtype != DType::kF32) return InvalidArgumentError("cuda SummarizeLogits: f32 logits only");
  if (static_cast<int64_t>(requests.size()) != logits.rows) {
    return InvalidArgumentError("cuda SummarizeLogits: one request per logits row");
  }
  int32_t k_max = 0;
  size_t n_pairs = 0;
  for (const SummaryRequest& r : requests) {
    SLIM_RETURN_IF_ERROR(ValidateSummaryRequest(r, logits.cols));
    k_max = std::max(k_max, r.k);
    if (r.k > 0) n_pairs += r.penalties.size();
  }
  out->assign(requests.size(), LogitsSummary{});
  if (k_max == 0) return OkStatus();
  const int32_t n_rows = static_cast<int32_t>(requests.size());
  // Staged words: SummaryRowArgs per row, then the pair ids, then their counts.
  constexpr size_t kRowWords = sizeof(SummaryRowArgs) / sizeof(int32_t);
  summary_words_.resize(requests.size() * kRowWords + 2 * n_pairs);
  int32_t* ids = summary_words_.data() + requests.size() * kRowWords;
  int32_t* counts = ids + n_pairs;
  int32_t at = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const SummaryRequest& r = requests[i];
    SummaryRowArgs ra;
    ra.pair_begin = at;
    ra.n_pairs = r.k > 0 ? static_cast<int32_t>(r.penalties.size()) : 0;
    ra.k = r.k;
    ra.repetition_penalty = r.repetition_penalty;
    ra.frequency_penalty = r.frequency_penalty;
    ra.presence_penalty = r.presence_penalty;
    ra.inv_t = r.inv_t;
    std::memcpy(summary_words_.data() + i * kRowWords, &ra, sizeof(ra));
    for (int32_t j = 0; j < ra.n_pairs; ++j, ++at) {
      ids[at] = r.penalties[static_cast<size_t>(j)].id;
      counts[at] = r.penalties[static_cast<size_t>(j)].count;
    }
  }
  SLIM_ASSIGN_OR_RETURN(const void* staged, stager_.Stage(summary_words_.data(), summary_words_.size() * sizeof(int32_t)));
  const int32_t vocab = static_cast<int32_t>(logits.cols);
  SLIM_ASSIGN_OR_RETURN(void* scratch, summary_scratch_.Get(LogitsSummaryScratchBytes(
                                           n_rows, vocab, k_max, static_cast<int32_t>(n_pairs))));
  LogitsSummaryArgs a;
  a.logits = logits.as<float>();
  a.stride = logits.stride;
  a.vocab = vocab;
  a.n_rows = n_rows;
  a.k_max = k_max;
  a.rows = static_cast<const SummaryRowArgs*>(staged);
  a.pair_ids = static_cast<const int32_t*>(staged) + requests.size() * kRowWords;
  a.pair_counts = a.pair_ids + n_pairs;
  a.n_pairs = static_cast<int32_t>(n_pairs);
  a.scratch = scratch;
  SLIM_RETURN_IF_ERROR(LaunchLogitsSummary(a, stream_));
  const size_t out_bytes = SummaryOutputBytes(n_rows, k_max);
  SLIM_ASSIGN_OR_RETURN(uint8_t* host_out, summary_host_.Get(out_bytes));
  SLIM_RETURN_IF_ERROR(LaunchMappedCopy(scratch, host_out, out_bytes, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  const uint8_t* tops = host_out + requests.size() * sizeof(SummaryRowOut);
  for (size_t i = 0; i < requests.size(); ++i) {
    SummaryRowOut o;
    std::memcpy(&o, host_out + i * sizeof(SummaryRowOut), sizeof(o));
    LogitsSummary& s = (*out)[i];
    s.max_logit = o.max_logit;
    s.z = o.z;
    s.top.resize(static_cast<size_t>(o.n_top));
    std::memcpy(s.top.data(), tops + i * static_cast<size_t>(k_max) * sizeof(TopLogit),
                static_cast<size_t>(o.n_top) * sizeof(TopLogit));
  }
  return OkStatus();
}

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const BackendOptions& options) {
  SLIM_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> b, CudaBackend::Create(options));
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace slim::cuda
