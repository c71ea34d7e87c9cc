// Kernels: embedding lookup and row gather, one block per output row; launchers below.
#include "engine/backend/cuda/embed_gather.h"

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"

namespace slim::cuda {
namespace {

template <typename T, typename O>
__global__ void EmbedKernel(const T* __restrict__ table, int64_t table_stride, const int32_t* __restrict__ ids,
                            O* __restrict__ out, int64_t out_stride, int64_t cols) {
  const int64_t i = blockIdx.x;
  const T* src = table + static_cast<int64_t>(ids[i]) * table_stride;
  O* dst = out + i * out_stride;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = FromF<O>(ToF(src[c]));
}

// 16-byte moves when every row start and length allows, else bytes.
template <typename W>
__global__ void GatherRowsKernel(const uint8_t* __restrict__ src, int64_t src_stride, const int32_t* __restrict__ rows,
                                 uint8_t* __restrict__ dst, int64_t dst_stride, int64_t words) {
  const W* s = reinterpret_cast<const W*>(src + static_cast<int64_t>(rows[blockIdx.x]) * src_stride);
  W* d = reinterpret_cast<W*>(dst + static_cast<int64_t>(blockIdx.x) * dst_stride);
  for (int64_t c = threadIdx.x; c < words; c += blockDim.x) d[c] = s[c];
}

template <typename T>
Status EmbedFrom(const T* table, int64_t table_stride, const int32_t* ids, void* out, DType out_type,
                 int64_t out_stride, int64_t n, int64_t cols, cudaStream_t stream) {
  const int threads = cols >= 1024 ? 256 : 128;
  if (out_type == DType::kF32) {
    EmbedKernel<<<n, threads, 0, stream>>>(table, table_stride, ids, static_cast<float*>(out), out_stride, cols);
  } else {
    EmbedKernel<<<n, threads, 0, stream>>>(table, table_stride, ids, static_cast<bf16*>(out), out_stride, cols);
  }
  CUDA_CHECK_LAUNCH("EmbedKernel");
  return OkStatus();
}

}  // namespace

Status LaunchEmbed(const void* table, DType table_type, int64_t table_stride, int64_t vocab, const int32_t* ids,
                   void* out, DType out_type, int64_t out_stride, int64_t n, int64_t cols, cudaStream_t stream) {
  const char* name = "LaunchEmbed";
  SLIM_GPU_REQUIRE(table_type == DType::kF32 || table_type == DType::kBF16, name);
  SLIM_GPU_REQUIRE(out_type == DType::kF32 || out_type == DType::kBF16, name);
  SLIM_GPU_REQUIRE(n >= 0 && n < (int64_t{1} << 31) && vocab > 0 && table_stride >= cols && out_stride >= cols, name);
  if (n == 0) return OkStatus();
  if (table_type == DType::kF32)
    return EmbedFrom(static_cast<const float*>(table), table_stride, ids, out, out_type, out_stride, n, cols, stream);
  return EmbedFrom(static_cast<const bf16*>(table), table_stride, ids, out, out_type, out_stride, n, cols, stream);
}

Status LaunchGatherRows(const void* src, int64_t src_stride_bytes, const int32_t* rows, void* dst,
                        int64_t dst_stride_bytes, int64_t n, int64_t row_bytes, cudaStream_t stream) {
  const char* name = "LaunchGatherRows";
  SLIM_GPU_REQUIRE(n >= 0 && n < (int64_t{1} << 31) && row_bytes >= 0, name);
  SLIM_GPU_REQUIRE(src_stride_bytes >= row_bytes && dst_stride_bytes >= row_bytes, name);
  if (n == 0 || row_bytes == 0) return OkStatus();
  const auto s = reinterpret_cast<uintptr_t>(src), d = reinterpret_cast<uintptr_t>(dst);
  const bool wide = (s | d | static_cast<uintptr_t>(src_stride_bytes) | static_cast<uintptr_t>(dst_stride_bytes) |
                     static_cast<uintptr_t>(row_bytes)) % 16 == 0;
  const auto* sp = static_cast<const uint8_t*>(src);
  auto* dp = static_cast<uint8_t*>(dst);
  if (wide) {
    GatherRowsKernel<uint4><<<n, 128, 0, stream>>>(sp, src_stride_bytes, rows, dp, dst_stride_bytes, row_bytes / 16);
  } else {
    GatherRowsKernel<uint8_t><<<n, 128, 0, stream>>>(sp, src_stride_bytes, rows, dp, dst_stride_bytes, row_bytes);
  }
  CUDA_CHECK_LAUNCH("GatherRowsKernel");
  return OkStatus();
}

}  // namespace slim::cuda
