// Kernels: strided f32 <-> bf16 conversion and synthetic weight generation; launchers below.
#include "engine/backend/cuda/convert.h"

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"

namespace slim::cuda {
namespace {

template <typename S, typename D>
__global__ void ConvertKernel(const S* __restrict__ src, int64_t src_stride, D* __restrict__ dst,
                              int64_t dst_stride, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    dst[r * dst_stride + c] = FromF<D>(ToF(src[r * src_stride + c]));
  }
}

// splitmix64, as engine/model/weight_source.cpp.
__device__ __forceinline__ uint64_t SplitMix(uint64_t x) {
  uint64_t z = x;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <typename D>
__global__ void SyntheticFillKernel(SyntheticFill f, D* __restrict__ dst, int64_t dst_stride, int64_t rows,
                                    int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const uint64_t x = f.state + static_cast<uint64_t>(i + 1) * 0x9e3779b97f4a7c15ULL;
    const float u = __fmul_rn(static_cast<float>(SplitMix(x) >> 40), 1.0f / 16777216.0f);
    // Explicit roundings: the host computes these without fused multiply-adds.
    const float v = f.is_norm ? __fadd_rn(1.0f, __fmul_rn(0.1f, __fsub_rn(u, 0.5f)))
                              : __fmul_rn(__fsub_rn(__fmul_rn(2.0f, u), 1.0f), f.half_width);
    dst[(i / cols) * dst_stride + i % cols] = FromF<D>(v);
  }
}

int GridFor(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<int>(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

template <typename S>
Status ConvertFrom(const S* src, int64_t src_stride, void* dst, DType dst_type, int64_t dst_stride, int64_t rows,
                   int64_t cols, cudaStream_t stream) {
  const int grid = GridFor(rows * cols, 256);
  if (dst_type == DType::kF32) {
    ConvertKernel<<<grid, 256, 0, stream>>>(src, src_stride, static_cast<float*>(dst), dst_stride, rows, cols);
  } else {
    ConvertKernel<<<grid, 256, 0, stream>>>(src, src_stride, static_cast<bf16*>(dst), dst_stride, rows, cols);
  }
  CUDA_CHECK_LAUNCH("ConvertKernel");
  return OkStatus();
}

}  // namespace

Status LaunchConvert(const void* src, DType src_type, int64_t src_stride, void* dst, DType dst_type,
                     int64_t dst_stride, int64_t rows, int64_t cols, cudaStream_t stream) {
  const char* name = "LaunchConvert";
  SLIM_GPU_REQUIRE(src_type == DType::kF32 || src_type == DType::kBF16, name);
  SLIM_GPU_REQUIRE(dst_type == DType::kF32 || dst_type == DType::kBF16, name);
  SLIM_GPU_REQUIRE(rows >= 0 && cols >= 0 && src_stride >= cols && dst_stride >= cols, name);
  if (rows == 0 || cols == 0) return OkStatus();
  if (src_type == DType::kF32)
    return ConvertFrom(static_cast<const float*>(src), src_stride, dst, dst_type, dst_stride, rows, cols, stream);
  return ConvertFrom(static_cast<const bf16*>(src), src_stride, dst, dst_type, dst_stride, rows, cols, stream);
}

Status LaunchSyntheticFill(const SyntheticFill& fill, void* dst, DType dst_type, int64_t dst_stride, int64_t rows,
                           int64_t cols, cudaStream_t stream) {
  const char* name = "LaunchSyntheticFill";
  SLIM_GPU_REQUIRE(dst_type == DType::kF32 || dst_type == DType::kBF16, name);
  SLIM_GPU_REQUIRE(rows >= 0 && cols >= 0 && dst_stride >= cols, name);
  if (rows == 0 || cols == 0) return OkStatus();
  const int grid = GridFor(rows * cols, 256);
  if (dst_type == DType::kF32) {
    SyntheticFillKernel<<<grid, 256, 0, stream>>>(fill, static_cast<float*>(dst), dst_stride, rows, cols);
  } else {
    SyntheticFillKernel<<<grid, 256, 0, stream>>>(fill, static_cast<bf16*>(dst), dst_stride, rows, cols);
  }
  CUDA_CHECK_LAUNCH("SyntheticFillKernel");
  return OkStatus();
}

}  // namespace slim::cuda
