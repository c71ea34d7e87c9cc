// CudaBackend: lifecycle, allocation, transfers, profiling, and the dispatch of the element-wise,
// GEMM and MLP ops to their launchers (kernels in the .cu files beside this one) or to cuBLAS;
// KV writes, attention and pruning scores are in cuda_attention.cpp.
#include "engine/backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "engine/backend/cuda/block_scores.h"
#include "engine/backend/cuda/convert.h"
#include "engine/backend/cuda/cuda_backend_internal.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/decode_attention.h"
#include "engine/backend/cuda/embed_gather.h"
#include "engine/backend/cuda/flash_attention.h"
#include "engine/backend/cuda/gemv.h"
#include "engine/backend/cuda/kv_write.h"
#include "engine/backend/cuda/mapped_copy.h"
#include "engine/backend/cuda/paged_kv.h"
#include "engine/backend/cuda/pdl.h"
#include "engine/backend/cuda/rms_norm.h"
#include "engine/backend/cuda/rope.h"
#include "engine/backend/cuda/sample_topk.h"
#include "engine/backend/cuda/stream_graphs.h"
#include "engine/backend/cuda/swiglu.h"

namespace slim::cuda {

// ---- profiling -----------------------------------------------------------------------------

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
  CaptureGap gap;
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
  // Sized for 64K score units, so that a decode step's scoring (one sequence) allocates no
  // pinned memory (an allocation synchronizes the device).
  SLIM_RETURN_IF_ERROR(sync_scores_.host.Get(size_t{256} << 10).status());
  score_slots_.push_back(std::make_unique<ScoreSlot>());
  SLIM_RETURN_IF_ERROR(score_slots_[0]->host.Get(size_t{256} << 10).status());
  profiling_ = options.profile;
  gemv_ = options.cuda_gemv;
  graphs_.Init(stream_);
  graphs_on_ = options.cuda_graphs != Toggle::kOff;
  SetPdlLaunch(options.cuda_pdl != Toggle::kOff);
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

bool CudaBackend::BeginGraphPass() {
  if (!graphs_on_ || profiling_ || graphs_.in_pass()) return false;
  graph_boundaries_ = 0;
  if (!graphs_.Begin().ok()) {
    (void)graphs_.End();
    graphs_on_ = false;
    return false;
  }
  return true;
}

void CudaBackend::GraphBoundary() {
  if (!graphs_.in_pass()) return;
  ++graph_boundaries_;
  // After 1, 3, 7, 15, ... boundaries: segments double in length.
  if ((graph_boundaries_ & (graph_boundaries_ + 1)) == 0) (void)graphs_.Split();  // End reports a failure
}

Status CudaBackend::EndGraphPass() {
  const Status s = graphs_.End();
  if (s.ok()) return s;
  // Errors the ops noted meanwhile came from the failed recording; the caller's rerun reports
  // its own.
  graphs_on_ = false;
  (void)TakeError();
  return s.WithPrefix("cuda graphs");
}

// ---- memory and transfers ----------------------------------------------------------------------

StatusOr<Buffer> CudaBackend::Alloc(DType dtype, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) return InvalidArgumentError("cuda alloc: negative shape");
  const size_t bytes = static_cast<size_t>(rows) * static_cast<size_t>(cols) * DTypeBytes(dtype);
  CaptureGap gap;
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
  return Buffer(v, [](void* q) {
    CaptureGap gap;
    (void)cudaFree(q);
  });
}

Status CudaBackend::Upload(const float* host, TensorView dst) {
  SLIM_RETURN_IF_ERROR(TakeError());
  if (dst.rows == 0 || dst.cols == 0) return OkStatus();
  CaptureGap gap;
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
  CaptureGap gap;
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
  CaptureGap gap;
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

void CudaBackend::Mlp(TensorView x, const MlpWeights& mw, const MlpScratch& scratch, TensorView out) {
  MatMulQ(x, mw.gate_up, mw.gate_up_q, scratch.gate_up);
  const TensorView gate_up = scratch.gate_up, w = mw.down;
  const GemvArgs g{.x = gate_up.data, .x_stride = gate_up.stride, .swiglu = true, .w = w.data, .w_stride = w.stride,
                   .out = out.data, .out_dtype = out.dtype, .out_stride = out.stride, .n = gate_up.rows,
                   .m = w.rows, .k = w.cols};
  // auto: fused for <= 4 rows, where it beats SwiGlu + cuBLAS (bench/cuda-decode.md).
  const bool want = gemv_ == Toggle::kOn || (gemv_ == Toggle::kAuto && gate_up.rows <= 4);
  const bool fused = want && gate_up.dtype == DType::kBF16 && w.dtype == DType::kBF16 &&
                     gate_up.cols == 2 * w.cols && out.rows == gate_up.rows && out.cols == w.rows && GemvSupports(g);
  if (!fused) {
    SwiGlu(gate_up, scratch.act);
    MatMulQ(scratch.act, w, mw.down_q, out);
    return;
  }
  OpScope scope(this, "SwiGluMatMul", profiling_ ? std::to_string(gate_up.rows) + "x" + std::to_string(w.rows) + "x" +
                                                        std::to_string(w.cols)
                                                  : std::string());
  Note(LaunchGemv(g, stream_));
}

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const BackendOptions& options) {
  SLIM_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> b, CudaBackend::Create(options));
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace slim::cuda
