// Kernel: RoPE, one block per row; the angle is formed and reduced in double (as the CPU
// reference does) so positions near 128K keep their precision; launcher below.
#include "engine/backend/cuda/rope.h"

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"

namespace slim::cuda {
namespace {

constexpr int kMaxHalf = 256;  // rope_dim <= 512

template <typename T>
__global__ void RopeKernel(T* __restrict__ x, int64_t x_stride, int n_heads, int head_dim, int half,
                           const int32_t* __restrict__ positions, const float* __restrict__ inv_freq) {
  __shared__ float cs[kMaxHalf], sn[kMaxHalf];
  RopeAngles(positions[blockIdx.x], inv_freq, half, cs, sn);
  __syncthreads();
  T* row = x + blockIdx.x * x_stride;
  for (int j = threadIdx.x; j < n_heads * half; j += blockDim.x) {
    const int h = j / half, i = j % half;
    T* v = row + h * head_dim + 2 * i;
    const float x0 = ToF(v[0]), x1 = ToF(v[1]);
    v[0] = FromF<T>(x0 * cs[i] - x1 * sn[i]);
    v[1] = FromF<T>(x0 * sn[i] + x1 * cs[i]);
  }
}

}  // namespace

Status LaunchRope(void* x, DType x_type, int64_t x_stride, int64_t rows, int n_heads, int head_dim, int rope_dim,
                  const int32_t* positions, const float* inv_freq, cudaStream_t stream) {
  const char* name = "LaunchRope";
  SLIM_GPU_REQUIRE(x_type == DType::kF32 || x_type == DType::kBF16, name);
  SLIM_GPU_REQUIRE(rows >= 0 && rows < (int64_t{1} << 31) && n_heads > 0 && head_dim > 0, name);
  SLIM_GPU_REQUIRE(rope_dim >= 0 && rope_dim % 2 == 0 && rope_dim <= head_dim && rope_dim / 2 <= kMaxHalf, name);
  SLIM_GPU_REQUIRE(x_stride >= int64_t{n_heads} * head_dim, name);
  if (rows == 0 || rope_dim == 0) return OkStatus();
  const int half = rope_dim / 2;
  const int threads = n_heads * half >= 1024 ? 256 : 128;
  if (x_type == DType::kF32) {
    RopeKernel<<<rows, threads, 0, stream>>>(static_cast<float*>(x), x_stride, n_heads, head_dim, half, positions,
                                             inv_freq);
  } else {
    RopeKernel<<<rows, threads, 0, stream>>>(static_cast<bf16*>(x), x_stride, n_heads, head_dim, half, positions,
                                             inv_freq);
  }
  CUDA_CHECK_LAUNCH("RopeKernel");
  return OkStatus();
}

}  // namespace slim::cuda
