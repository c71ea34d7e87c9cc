// Per-unit mean keys over paged KV blocks (key_summary.h).
#include "engine/backend/cuda/key_summary.h"

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"

namespace slim::cuda {

namespace {

// One thread block per (unit, KV head), one thread per head dimension.
template <typename OutT>
__global__ void KeyUnitMeansKernel(KeyUnitMeanArgs a) {
  const int64_t u = blockIdx.x;
  const int g = blockIdx.y, d = threadIdx.x;
  if (d >= a.head_dim) return;
  const int64_t t0 = u * a.unit_tokens;
  const int64_t t1 = min(t0 + a.unit_tokens, static_cast<int64_t>(a.n_tokens));
  const int32_t b = a.blocks[t0 / a.block_tokens];
  const int slot0 = static_cast<int>(t0 % a.block_tokens);
  const bf16* k = reinterpret_cast<const bf16*>(a.arena + b * a.block_bytes + g * a.head_bytes) +
                  static_cast<int64_t>(slot0) * a.head_dim + d;
  float sum = 0.0f;
  for (int64_t t = t0; t < t1; ++t, k += a.head_dim) sum += ToF(*k);
  OutT* out = static_cast<OutT*>(a.out) + u * a.out_stride + static_cast<int64_t>(g) * a.head_dim + d;
  *out = FromF<OutT>(sum / static_cast<float>(t1 - t0));
}

}  // namespace

Status LaunchKeyUnitMeans(const KeyUnitMeanArgs& a, cudaStream_t stream) {
  const char* name = "LaunchKeyUnitMeans";
  SLIM_GPU_REQUIRE(a.arena != nullptr && a.blocks != nullptr && a.out != nullptr, name);
  SLIM_GPU_REQUIRE(a.n_tokens >= 0 && a.n_kv_heads > 0 && a.n_kv_heads <= 65535, name);
  SLIM_GPU_REQUIRE(a.head_dim > 0 && a.head_dim <= 1024, name);
  SLIM_GPU_REQUIRE(a.unit_tokens > 0 && a.block_tokens > 0 && a.block_tokens % a.unit_tokens == 0, name);
  SLIM_GPU_REQUIRE(a.out_dtype == DType::kBF16 || a.out_dtype == DType::kF32, name);
  SLIM_GPU_REQUIRE(a.out_stride >= int64_t{a.n_kv_heads} * a.head_dim, name);
  if (a.n_tokens == 0) return OkStatus();
  const int64_t n_units = (int64_t{a.n_tokens} + a.unit_tokens - 1) / a.unit_tokens;
  const dim3 grid(static_cast<unsigned>(n_units), static_cast<unsigned>(a.n_kv_heads));
  const int threads = (a.head_dim + 31) / 32 * 32;
  if (a.out_dtype == DType::kBF16) {
    KeyUnitMeansKernel<bf16><<<grid, threads, 0, stream>>>(a);
  } else {
    KeyUnitMeansKernel<float><<<grid, threads, 0, stream>>>(a);
  }
  CUDA_CHECK_LAUNCH("KeyUnitMeansKernel");
  return OkStatus();
}

}  // namespace slim::cuda
