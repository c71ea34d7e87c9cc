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

// Attention-mass variant, three passes over [n_heads * window] query rows x n_rows keys.
// 1. logits[row, t] = q_r[h] . k_t[h / G] * scale for t <= r (the window's causal limit), else
//    -inf; one thread per (row, t), the query in shared memory.
template <typename T>
__global__ void AttnLogitsKernel(const T* __restrict__ q, int64_t q_stride, const T* __restrict__ k,
                                 int64_t k_stride, int64_t n_rows, int window, int n_heads, int n_kv_heads,
                                 int head_dim, float scale, float* __restrict__ logits) {
  extern __shared__ float qs[];  // [head_dim]
  const int row = blockIdx.y;    // h * window + j
  const int h = row / window, j = row % window;
  const int64_t r = n_rows - window + j;  // the query's row
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) qs[d] = ToF(q[r * q_stride + int64_t{h} * head_dim + d]);
  __syncthreads();
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n_rows) return;
  float out = -INFINITY;
  if (t <= r) {
    const T* kt = k + t * k_stride + int64_t{h / (n_heads / n_kv_heads)} * head_dim;
    float dot = 0.0f;
    for (int d = 0; d < head_dim; ++d) dot += qs[d] * ToF(kt[d]);
    out = dot * scale;
  }
  logits[static_cast<int64_t>(row) * n_rows + t] = out;
}

// 2. Per query row: max and sum of exp(logit - max).
__global__ void AttnRowStatsKernel(const float* __restrict__ logits, int64_t n_rows, float* __restrict__ stats) {
  const float* l = logits + static_cast<int64_t>(blockIdx.x) * n_rows;
  float mx = -INFINITY;
  for (int64_t t = threadIdx.x; t < n_rows; t += blockDim.x) mx = fmaxf(mx, l[t]);
  mx = BlockMax(mx);
  float s = 0.0f;
  for (int64_t t = threadIdx.x; t < n_rows; t += blockDim.x) s += __expf(l[t] - mx);
  s = BlockSum(s);
  if (threadIdx.x == 0) {
    stats[2 * blockIdx.x] = mx;
    stats[2 * blockIdx.x + 1] = s;
  }
}

// 3. Per unit: the mass of its tokens summed over the query rows, divided by their number.
__global__ void AttnUnitMassKernel(const float* __restrict__ logits, const float* __restrict__ stats,
                                   int64_t n_rows, int n_query_rows, int unit_tokens, float* __restrict__ unit_scores) {
  const int64_t u0 = static_cast<int64_t>(blockIdx.x) * unit_tokens;
  const int64_t u1 = u0 + unit_tokens < n_rows ? u0 + unit_tokens : n_rows;
  const int64_t n_unit = u1 - u0;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < int64_t{n_query_rows} * n_unit; i += blockDim.x) {
    const int64_t row = i / n_unit, t = u0 + i % n_unit;
    s += __expf(logits[row * n_rows + t] - stats[2 * row]) / stats[2 * row + 1];
  }
  s = BlockSum(s);
  if (threadIdx.x == 0) unit_scores[blockIdx.x] = s / static_cast<float>(n_query_rows);
}

template <typename T>
Status RunAttention(const BlockScoreArgs& a, cudaStream_t stream) {
  const int w = static_cast<int>(a.query_window < a.n_rows ? a.query_window : a.n_rows);
  const int n_query_rows = a.n_heads * w;
  const float scale = 1.0f / sqrtf(static_cast<float>(a.head_dim));
  const dim3 grid(static_cast<unsigned>((a.n_rows + 127) / 128), static_cast<unsigned>(n_query_rows));
  AttnLogitsKernel<<<grid, 128, a.head_dim * sizeof(float), stream>>>(
      static_cast<const T*>(a.q), a.q_stride, static_cast<const T*>(a.k), a.k_stride, a.n_rows, w, a.n_heads,
      a.n_kv_heads, a.head_dim, scale, a.logits);
  CUDA_CHECK_LAUNCH("AttnLogitsKernel");
  AttnRowStatsKernel<<<n_query_rows, 512, 0, stream>>>(a.logits, a.n_rows, a.row_stats);
  CUDA_CHECK_LAUNCH("AttnRowStatsKernel");
  const int64_t units = (a.n_rows + a.unit_tokens - 1) / a.unit_tokens;
  AttnUnitMassKernel<<<static_cast<unsigned>(units), 128, 0, stream>>>(a.logits, a.row_stats, a.n_rows, n_query_rows,
                                                                        a.unit_tokens, a.unit_scores);
  CUDA_CHECK_LAUNCH("AttnUnitMassKernel");
  return OkStatus();
}

template <typename T>
Status Run(const BlockScoreArgs& a, cudaStream_t stream) {
  if (a.attention) return RunAttention<T>(a, stream);
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

// Floats before the unit scores in the scratch, rounded up to 16 bytes: the scores are read back
// by a 16-byte copy kernel.
size_t UnitScoreOffset(const BlockScoreArgs& a) {
  const size_t rows = static_cast<size_t>(a.n_heads) * static_cast<size_t>(a.query_window < a.n_rows ? a.query_window : a.n_rows);
  const size_t before = a.attention ? rows * static_cast<size_t>(a.n_rows) + 2 * rows
                                    : static_cast<size_t>(a.n_heads) * a.head_dim;
  return (before + 3) / 4 * 4;
}

}  // namespace

size_t BlockScoreScratchFloats(const BlockScoreArgs& a) {
  const size_t units = static_cast<size_t>((a.n_rows + a.unit_tokens - 1) / a.unit_tokens);
  return UnitScoreOffset(a) + units;
}

void AssignBlockScoreScratch(BlockScoreArgs* a, float* scratch) {
  const size_t rows = static_cast<size_t>(a->n_heads) * static_cast<size_t>(a->query_window < a->n_rows ? a->query_window : a->n_rows);
  if (a->attention) {
    a->logits = scratch;
    a->row_stats = scratch + rows * static_cast<size_t>(a->n_rows);
  } else {
    a->q_mean = scratch;
  }
  a->unit_scores = scratch + UnitScoreOffset(*a);
}

Status LaunchBlockScores(const BlockScoreArgs& a, cudaStream_t stream) {
  const char* name = "LaunchBlockScores";
  SLIM_GPU_REQUIRE(a.dtype == DType::kF32 || a.dtype == DType::kBF16, name);
  SLIM_GPU_REQUIRE(a.n_heads > 0 && a.n_kv_heads > 0 && a.n_heads % a.n_kv_heads == 0 && a.head_dim > 0, name);
  SLIM_GPU_REQUIRE(a.unit_tokens > 0 && a.query_window > 0, name);
  SLIM_GPU_REQUIRE(a.n_rows >= 0 && (a.n_rows + a.unit_tokens - 1) / a.unit_tokens < (int64_t{1} << 31), name);
  SLIM_GPU_REQUIRE(int64_t{a.n_kv_heads} * a.head_dim * 4 <= 48 * 1024, name);
  SLIM_GPU_REQUIRE(!a.attention || (a.logits != nullptr && a.row_stats != nullptr && a.n_heads * a.query_window < 65536),
                   name);
  SLIM_GPU_REQUIRE(a.q_stride >= int64_t{a.n_heads} * a.head_dim && a.k_stride >= int64_t{a.n_kv_heads} * a.head_dim,
                   name);
  if (a.n_rows == 0) return OkStatus();
  return a.dtype == DType::kF32 ? Run<float>(a, stream) : Run<bf16>(a, stream);
}

}  // namespace slim::cuda
