// Kernels: KV append, one block per (4 rows, sequence), 16-byte moves when aligned; RoPE fused with
// the append (16-byte moves when aligned); launchers below.
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

// RoPE and the append in one pass, one block per (row, sequence): q's heads rotate in place, K's
// heads rotate and go both back to k (pruning scores and later reads see post-RoPE keys) and to
// the row's KV slot, V is copied. The same arithmetic as RopeKernel (angles in double).
constexpr int kMaxHalf = 256;

// The row a block of the RoPE + append kernels takes (row blockIdx.x of sequence blockIdx.y) and
// where its KV slot lies; false past the sequence's rows.
struct AppendRow {
  int64_t row;    // in q, k, v
  uint8_t* base;  // the slot's block in the arena
  int64_t t_off;  // the slot within a head's slice of the block, in elements
};
__device__ __forceinline__ bool TakeAppendRow(const PagedKv& kv, AppendRow* a) {
  const PagedSeq s = kv.seqs[blockIdx.y];
  const int r = blockIdx.x;
  if (r >= s.n_rows) return false;
  const int slot = s.n_past + r;
  a->row = s.row_begin + r;
  a->base = kv.arena + static_cast<int64_t>(kv.tables[s.table_offset + slot / kv.block_tokens]) * kv.block_bytes;
  a->t_off = static_cast<int64_t>(slot % kv.block_tokens) * kv.head_dim;
  return true;
}

__global__ void RopeWriteKvKernel(PagedKv kv, bf16* __restrict__ q, int64_t q_stride, int n_heads, bf16* __restrict__ k,
                                  int64_t k_stride, const bf16* __restrict__ v, int64_t v_stride, int half,
                                  const int32_t* __restrict__ positions, const float* __restrict__ inv_freq) {
  __shared__ float cs[kMaxHalf], sn[kMaxHalf];
  PdlTrigger();
  PdlWait();
  AppendRow ar;
  if (!TakeAppendRow(kv, &ar)) return;
  const int64_t row = ar.row, t_off = ar.t_off;
  uint8_t* base = ar.base;
  RopeAngles(positions[row], inv_freq, half, cs, sn);
  __syncthreads();
  const int hd = kv.head_dim;
  bf16* qr = q + row * q_stride;
  bf16* kr = k + row * k_stride;
  // Pairs of every head: query heads first, then key heads (rotated into k and the slot).
  const int pairs = hd / 2;
  for (int j = threadIdx.x; j < (n_heads + kv.n_kv_heads) * pairs; j += blockDim.x) {
    const int h = j / pairs, i = j % pairs;
    const bool is_k = h >= n_heads;
    bf16* x = (is_k ? kr + (h - n_heads) * hd : qr + h * hd) + 2 * i;
    bf16 y0 = x[0], y1 = x[1];
    if (i < half) {
      const float x0 = ToF(y0), x1 = ToF(y1);
      y0 = FromF<bf16>(x0 * cs[i] - x1 * sn[i]);
      y1 = FromF<bf16>(x0 * sn[i] + x1 * cs[i]);
      x[0] = y0;
      x[1] = y1;
    }
    if (is_k) {
      bf16* dst = reinterpret_cast<bf16*>(base + (h - n_heads) * kv.head_bytes) + t_off + 2 * i;
      dst[0] = y0;
      dst[1] = y1;
    }
  }
  const bf16* vr = v + row * v_stride;
  for (int j = threadIdx.x; j < kv.n_kv_heads * pairs; j += blockDim.x) {
    const int g = j / pairs, i = j % pairs;
    *reinterpret_cast<__nv_bfloat162*>(reinterpret_cast<bf16*>(base + (kv.n_kv_heads + g) * kv.head_bytes) + t_off +
                                       2 * i) = *reinterpret_cast<const __nv_bfloat162*>(vr + g * hd + 2 * i);
  }
}

// The same pass with 16-byte moves (8 bf16 = 4 pairs a thread, each warp 512 contiguous bytes), all
// of a thread's loads issued before the angles are computed: the kernel above moves 2-4 bytes a
// thread and waits for each, too few bytes in flight to approach the memory bandwidth (this one is
// faster at the 8B model's prefill and decode rows; bench/cuda-prefill.md). Needs
// head_dim and rope_dim multiples of 8 (a chunk is rotated whole or not at all) and 16-byte
// aligned rows; a row's chunks are q heads, then k heads, then v heads.
constexpr int kVecThreads = 256, kVecPer = 4;  // up to 1024 chunks a row in one round

__global__ void __launch_bounds__(kVecThreads)
    RopeWriteKvVecKernel(PagedKv kv, bf16* __restrict__ q, int64_t q_stride, int n_heads, bf16* __restrict__ k,
                         int64_t k_stride, const bf16* __restrict__ v, int64_t v_stride, int half,
                         const int32_t* __restrict__ positions, const float* __restrict__ inv_freq) {
  __shared__ float cs[kMaxHalf], sn[kMaxHalf];
  PdlTrigger();
  PdlWait();
  AppendRow ar;
  if (!TakeAppendRow(kv, &ar)) return;
  const int64_t row = ar.row, t_off = ar.t_off;
  uint8_t* base = ar.base;
  const int hd = kv.head_dim, cph = hd / 8;
  const int n_rot = n_heads + kv.n_kv_heads, total = (n_rot + kv.n_kv_heads) * cph;
  bf16* qr = q + row * q_stride;
  bf16* kr = k + row * k_stride;
  const bf16* vr = v + row * v_stride;
  auto src = [&](int h) -> bf16* {
    return h < n_heads ? qr + h * hd : h < n_rot ? kr + (h - n_heads) * hd : const_cast<bf16*>(vr) + (h - n_rot) * hd;
  };
  const int pos = positions[row];
  for (int j0 = 0; j0 < total; j0 += kVecThreads * kVecPer) {
    uint4 val[kVecPer];
#pragma unroll
    for (int u = 0; u < kVecPer; ++u) {
      const int j = j0 + u * kVecThreads + threadIdx.x;
      if (j < total) val[u] = *reinterpret_cast<const uint4*>(src(j / cph) + (j % cph) * 8);
    }
    if (j0 == 0) {
      RopeAngles(pos, inv_freq, half, cs, sn);
      __syncthreads();
    }
#pragma unroll
    for (int u = 0; u < kVecPer; ++u) {
      const int j = j0 + u * kVecThreads + threadIdx.x;
      if (j >= total) continue;
      const int h = j / cph, c = j % cph;
      if (h < n_rot && 4 * c < half) {
        float x[8];
        Bf16x8ToF(val[u], x);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = 4 * c + e;
          const float x0 = x[2 * e], x1 = x[2 * e + 1];
          x[2 * e] = x0 * cs[i] - x1 * sn[i];  // rounded to bf16 as RopeWriteKvKernel rounds
          x[2 * e + 1] = x0 * sn[i] + x1 * cs[i];
        }
        val[u] = FToBf16x8(x);
        *reinterpret_cast<uint4*>(src(h) + c * 8) = val[u];
      }
      if (h >= n_heads) {
        const int slice = h < n_rot ? h - n_heads : kv.n_kv_heads + (h - n_rot);
        *(reinterpret_cast<uint4*>(reinterpret_cast<bf16*>(base + slice * kv.head_bytes) + t_off) + c) = val[u];
      }
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

namespace slim::cuda {

Status LaunchRopeWriteKv(const PagedKv& kv, void* q, int64_t q_stride, int n_heads, void* k, int64_t k_stride,
                         const void* v, int64_t v_stride, int max_rows, int rope_dim, const int32_t* positions,
                         const float* inv_freq, cudaStream_t stream) {
  const char* name = "LaunchRopeWriteKv";
  SLIM_GPU_REQUIRE(kv.n_seqs >= 0 && kv.n_seqs < 65536 && max_rows >= 0 && n_heads > 0, name);
  SLIM_GPU_REQUIRE(kv.head_bytes == int64_t{kv.block_tokens} * kv.head_dim * 2 && kv.head_dim % 2 == 0, name);
  SLIM_GPU_REQUIRE(rope_dim >= 0 && rope_dim % 2 == 0 && rope_dim <= kv.head_dim && rope_dim / 2 <= kMaxHalf, name);
  SLIM_GPU_REQUIRE(q_stride >= int64_t{n_heads} * kv.head_dim && k_stride >= int64_t{kv.n_kv_heads} * kv.head_dim &&
                       v_stride >= int64_t{kv.n_kv_heads} * kv.head_dim,
                   name);
  SLIM_GPU_REQUIRE(q_stride % 2 == 0 && k_stride % 2 == 0 && v_stride % 2 == 0 &&
                       (reinterpret_cast<uintptr_t>(q) | reinterpret_cast<uintptr_t>(k) |
                        reinterpret_cast<uintptr_t>(v)) % 4 == 0,
                   name);
  if (kv.n_seqs == 0 || max_rows == 0) return OkStatus();
  const dim3 grid(max_rows, kv.n_seqs);
  const bool wide = kv.head_dim % 8 == 0 && rope_dim % 8 == 0 && q_stride % 8 == 0 && k_stride % 8 == 0 &&
                    v_stride % 8 == 0 &&
                    (reinterpret_cast<uintptr_t>(q) | reinterpret_cast<uintptr_t>(k) | reinterpret_cast<uintptr_t>(v) |
                     reinterpret_cast<uintptr_t>(kv.arena) | static_cast<uintptr_t>(kv.block_bytes) |
                     static_cast<uintptr_t>(kv.head_bytes)) % 16 == 0;
  auto* kernel = wide ? RopeWriteKvVecKernel : RopeWriteKvKernel;
  CUDA_CHECK(LaunchPdl(kernel, grid, dim3(256), 0, stream, kv, static_cast<bf16*>(q), q_stride, n_heads,
                       static_cast<bf16*>(k), k_stride, static_cast<const bf16*>(v), v_stride, rope_dim / 2, positions,
                       inv_freq));
  return OkStatus();
}

}  // namespace slim::cuda
