// Kernels: SwiGLU, 8 elements (16 bytes of bf16) per thread when aligned, scalar otherwise;
// launcher below.
#include "engine/backend/cuda/swiglu.h"

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"

namespace slim::cuda {
namespace {

__device__ __forceinline__ float Silu(float x) { return x / (1.0f + expf(-x)); }

// bf16 in and out, ff and strides multiples of 8.
__global__ void SwiGluBf16x8Kernel(const bf16* __restrict__ gu, int64_t in_stride, bf16* __restrict__ out,
                                   int64_t out_stride, int64_t rows, int64_t ff) {
  const int64_t per_row = ff / 8, n = rows * per_row;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / per_row, c = (i % per_row) * 8;
    const bf16* g = gu + r * in_stride + c;
    float gf[8], uf[8], of[8];
    Bf16x8ToF(*reinterpret_cast<const uint4*>(g), gf);
    Bf16x8ToF(*reinterpret_cast<const uint4*>(g + ff), uf);
#pragma unroll
    for (int k = 0; k < 8; ++k) of[k] = Silu(gf[k]) * uf[k];
    *reinterpret_cast<uint4*>(out + r * out_stride + c) = FToBf16x8(of);
  }
}

template <typename I, typename O>
__global__ void SwiGluKernel(const I* __restrict__ gu, int64_t in_stride, O* __restrict__ out, int64_t out_stride,
                             int64_t rows, int64_t ff) {
  const int64_t n = rows * ff;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / ff, c = i % ff;
    const I* g = gu + r * in_stride;
    out[r * out_stride + c] = FromF<O>(Silu(ToF(g[c])) * ToF(g[c + ff]));
  }
}

int Grid(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return static_cast<int>(b < 65536 ? (b > 0 ? b : 1) : 65536);
}

template <typename I>
Status SwiGluFrom(const I* in, int64_t in_stride, void* out, DType out_type, int64_t out_stride, int64_t rows,
                  int64_t ff, cudaStream_t stream) {
  if (out_type == DType::kF32) {
    SwiGluKernel<<<Grid(rows * ff), 256, 0, stream>>>(in, in_stride, static_cast<float*>(out), out_stride, rows, ff);
  } else {
    SwiGluKernel<<<Grid(rows * ff), 256, 0, stream>>>(in, in_stride, static_cast<bf16*>(out), out_stride, rows, ff);
  }
  CUDA_CHECK_LAUNCH("SwiGluKernel");
  return OkStatus();
}

}  // namespace

Status LaunchSwiGlu(const void* gate_up, DType in_type, int64_t in_stride, void* out, DType out_type,
                    int64_t out_stride, int64_t rows, int64_t ff, cudaStream_t stream) {
  const char* name = "LaunchSwiGlu";
  SLIM_GPU_REQUIRE(in_type == DType::kF32 || in_type == DType::kBF16, name);
  SLIM_GPU_REQUIRE(out_type == DType::kF32 || out_type == DType::kBF16, name);
  SLIM_GPU_REQUIRE(rows >= 0 && ff >= 0 && in_stride >= 2 * ff && out_stride >= ff, name);
  if (rows == 0 || ff == 0) return OkStatus();
  const bool vec = in_type == DType::kBF16 && out_type == DType::kBF16 && ff % 8 == 0 && in_stride % 8 == 0 &&
                   out_stride % 8 == 0 && reinterpret_cast<uintptr_t>(gate_up) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (vec) {
    SwiGluBf16x8Kernel<<<Grid(rows * ff / 8), 256, 0, stream>>>(static_cast<const bf16*>(gate_up), in_stride,
                                                                static_cast<bf16*>(out), out_stride, rows, ff);
    CUDA_CHECK_LAUNCH("SwiGluBf16x8Kernel");
    return OkStatus();
  }
  if (in_type == DType::kF32)
    return SwiGluFrom(static_cast<const float*>(gate_up), in_stride, out, out_type, out_stride, rows, ff, stream);
  return SwiGluFrom(static_cast<const bf16*>(gate_up), in_stride, out, out_type, out_stride, rows, ff, stream);
}

}  // namespace slim::cuda
