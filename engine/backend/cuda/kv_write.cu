// Kernel: KV append, one block per (4 rows, sequence), 16-byte moves when aligned; launcher below.
#include "engine/backend/cuda/kv_write.h"

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"

namespace slim::cuda {
namespace {

constexpr int kRowsPerBlock = 4;

// W: the unit moved per thread (uint4 = 8 bf16, or one bf16).
template <typename W>
__global__ void WriteKvKernel(PagedKv kv, const bf16* __restrict__ k, int64_t k_stride, const bf16* __restrict__ v,
                              int64_t v_stride) {
  const PagedSeq s = kv.seqs[blockIdx.y];
  constexpr int kPer = sizeof(W) / sizeof(bf16);
  const int units = kv.head_dim / kPer;              // per head
  const int per_row = 2 * kv.n_kv_heads * units;     // K then V
  for (int rr = 0; rr < kRowsPerBlock; ++rr) {
    const int r = blockIdx.x * kRowsPerBlock + rr;
    if (r >= s.n_rows) return;
    const int slot = s.n_past + r;
    const int64_t block = kv.tables[s.table_offset + slot / kv.block_tokens];
    const int t = slot % kv.block_tokens;
    uint8_t* base = kv.arena + block * kv.block_bytes;
    const int64_t row = s.row_begin + r;
    for (int i = threadIdx.x; i < per_row; i += blockDim.x) {
      const int is_v = i / (kv.n_kv_heads * units);
      const int g = (i / units) % kv.n_kv_heads, u = i % units;
      const bf16* src = (is_v ? v + row * v_stride : k + row * k_stride) + g * kv.head_dim + u * kPer;
      W* dst = reinterpret_cast<W*>(base + (is_v * kv.n_kv_heads + g) * kv.head_bytes) +
               (static_cast<int64_t>(t) * kv.head_dim) / kPer + u;
      *dst = *reinterpret_cast<const W*>(src);
    }
  }
}

}  // namespace

Status LaunchWriteKv(const PagedKv& kv, const void* k, int64_t k_stride, const void* v, int64_t v_stride,
                     int max_rows, cudaStream_t stream) {
  const char* name = "LaunchWriteKv";
  SLIM_GPU_REQUIRE(kv.n_seqs >= 0 && kv.n_seqs < 65536 && max_rows >= 0, name);
  SLIM_GPU_REQUIRE(kv.head_bytes == int64_t{kv.block_tokens} * kv.head_dim * 2, name);
  SLIM_GPU_REQUIRE(k_stride >= int64_t{kv.n_kv_heads} * kv.head_dim && v_stride >= int64_t{kv.n_kv_heads} * kv.head_dim,
                   name);
  if (kv.n_seqs == 0 || max_rows == 0) return OkStatus();
  const dim3 grid((max_rows + kRowsPerBlock - 1) / kRowsPerBlock, kv.n_seqs);
  const bool wide = kv.head_dim % 8 == 0 && k_stride % 8 == 0 && v_stride % 8 == 0 &&
                    (reinterpret_cast<uintptr_t>(k) | reinterpret_cast<uintptr_t>(v) |
                     reinterpret_cast<uintptr_t>(kv.arena) | static_cast<uintptr_t>(kv.block_bytes)) % 16 == 0;
  const auto* kp = static_cast<const bf16*>(k);
  const auto* vp = static_cast<const bf16*>(v);
  if (wide) {
    WriteKvKernel<uint4><<<grid, 128, 0, stream>>>(kv, kp, k_stride, vp, v_stride);
  } else {
    WriteKvKernel<bf16><<<grid, 128, 0, stream>>>(kv, kp, k_stride, vp, v_stride);
  }
  CUDA_CHECK_LAUNCH("WriteKvKernel");
  return OkStatus();
}

}  // namespace slim::cuda
