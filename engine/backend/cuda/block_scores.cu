// Kernels: window query mean, then one block per token unit (mean key per KV head in shared
// memory, one warp per query head); launcher below.
#include "engine/backend/cuda/block_scores.h"

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"

namespace slim::cuda {
namespace {

template <typename T>
__global__ void QueryMeanKernel(const T* __restrict__ q, int64_t q_stride, int64_t n_rows, int window, int width,
                                float* __restrict__ q_mean) {
  const int64_t w = window < n_rows ? window : n_rows;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < width; i += gridDim.x * blockDim.x) {
    float s = 0.0f;
    for (int64_t r = n_rows - w; r < n_rows; ++r) s += ToF(q[r * q_stride + i]);
    q_mean[i] = s / static_cast<float>(w);
  }
}

template <typename T>
__global__ void UnitScoreKernel(const T* __restrict__ k, int64_t k_stride, int64_t n_rows, int n_heads,
                                int n_kv_heads, int head_dim, int unit_tokens, const float* __restrict__ q_mean,
                                float* __restrict__ unit_scores) {
  extern __shared__ float k_sum[];  // [n_kv_heads * head_dim]
  __shared__ float warp_part[32];
  const int64_t u0 = static_cast<int64_t>(blockIdx.x) * unit_tokens;
  const int64_t u1 = u0 + unit_tokens < n_rows ? u0 + unit_tokens : n_rows;
  const int width = n_kv_heads * head_dim;
  for (int i = threadIdx.x; i < width; i += blockDim.x) {
    float s = 0.0f;
    for (int64_t r = u0; r < u1; ++r) s += ToF(k[r * k_stride + i]);
    k_sum[i] = s;
  }
  __syncthreads();
  const float inv = 1.0f / static_cast<float>(u1 - u0);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  const int group = n_heads / n_kv_heads;
  float part = 0.0f;
  for (int h = warp; h < n_heads; h += n_warps) {
    const float* qh = q_mean + h * head_dim;
    const float* kh = k_sum + (h / group) * head_dim;
    float d = 0.0f;
    for (int i = lane; i < head_dim; i += 32) d += qh[i] * kh[i];
    d = WarpSum(d);
    part += fabsf(d * inv);
  }
  if (lane == 0) warp_part[warp] = part;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < n_warps; ++w) total += warp_part[w];
    unit_scores[blockIdx.x] = total / static_cast<float>(n_heads);
  }
}

template <typename T>
Status Run(const BlockScoreArgs& a, cudaStream_t stream) {
  const int width_q = a.n_heads * a.head_dim, width_k = a.n_kv_heads * a.head_dim;
  QueryMeanKernel<<<(width_q + 255) / 256, 256, 0, stream>>>(static_cast<const T*>(a.q), a.q_stride, a.n_rows,
                                                             a.query_window, width_q, a.q_mean);
  CUDA_CHECK_LAUNCH("QueryMeanKernel");
  const int64_t units = (a.n_rows + a.unit_tokens - 1) / a.unit_tokens;
  UnitScoreKernel<<<units, 128, width_k * sizeof(float), stream>>>(static_cast<const T*>(a.k), a.k_stride, a.n_rows,
                                                                   a.n_heads, a.n_kv_heads, a.head_dim, a.unit_tokens,
                                                                   a.q_mean, a.unit_scores);
  CUDA_CHECK_LAUNCH("UnitScoreKernel");
  return OkStatus();
}

}  // namespace

Status LaunchBlockScores(const BlockScoreArgs& a, cudaStream_t stream) {
  const char* name = "LaunchBlockScores";
  SLIM_GPU_REQUIRE(a.dtype == DType::kF32 || a.dtype == DType::kBF16, name);
  SLIM_GPU_REQUIRE(a.n_heads > 0 && a.n_kv_heads > 0 && a.n_heads % a.n_kv_heads == 0 && a.head_dim > 0, name);
  SLIM_GPU_REQUIRE(a.unit_tokens > 0 && a.query_window > 0, name);
  SLIM_GPU_REQUIRE(a.n_rows >= 0 && (a.n_rows + a.unit_tokens - 1) / a.unit_tokens < (int64_t{1} << 31), name);
  SLIM_GPU_REQUIRE(int64_t{a.n_kv_heads} * a.head_dim * 4 <= 48 * 1024, name);
  SLIM_GPU_REQUIRE(a.q_stride >= int64_t{a.n_heads} * a.head_dim && a.k_stride >= int64_t{a.n_kv_heads} * a.head_dim,
                   name);
  if (a.n_rows == 0) return OkStatus();
  return a.dtype == DType::kF32 ? Run<float>(a, stream) : Run<bf16>(a, stream);
}

}  // namespace slim::cuda
