// Kernel: FA2-style causal prefill attention (mma.sync m16n8k16 bf16, ldmatrix from XOR-swizzled
// shared memory, cp.async double buffering of the K/V block), launcher below.
//
// CTA: 8 warps, 128 query rows of one head; warp w owns rows [16w, 16w + 16). Per KV block j:
//   S = Q K_j^T (fp32), causal mask where the block reaches past the warp's first row,
//   online softmax in the log2 domain, O = O * alpha + P V_j (P rounded to bf16).
// Shared memory: Q [128][HD], K and V [2 stages][64][HD], 16-byte chunks XOR-swizzled by row.
#include "engine/backend/cuda/flash_attention.h"

#include <cmath>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"

namespace slim::cuda {
namespace {

constexpr int kBM = kFlashRows, kBN = kFlashKeys, kWarps = 8, kThreads = kWarps * 32;

// Element offset of 16-byte chunk `ch` of row `r` in a [rows][HD] bf16 tile.
template <int HD>
__device__ __forceinline__ int Swz(int r, int ch) {
  return r * HD + ((ch ^ (r & 7)) * 8);
}

template <int HD>
__global__ void __launch_bounds__(kThreads, 1) FlashPrefillKernel(const FlashParams p, float scale_log2) {
  constexpr int CH = HD / 8;   // 16-byte chunks per row
  constexpr int KT = HD / 16;  // k-steps of QK^T
  constexpr int DT = HD / 8;   // n-tiles of the output
  extern __shared__ __align__(128) uint8_t smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);  // [kBM][HD]
  bf16* sK = sQ + kBM * HD;                  // [2][kBN][HD]
  bf16* sV = sK + 2 * kBN * HD;              // [2][kBN][HD]

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const FlashTile tile = p.tiles[blockIdx.x];
  const PagedSeq s = p.kv.seqs[tile.seq];
  const int h = blockIdx.y, g = h / (p.n_heads / p.kv.n_kv_heads);
  const int r0 = tile.row0;
  const int rows = min(kBM, s.n_rows - r0);
  const int n_total = s.n_past + s.n_rows;
  const int n_kt = (s.n_past + r0 + rows - 1) / kBN + 1;  // blocks holding visible keys

  const bf16* q = static_cast<const bf16*>(p.q) + static_cast<int64_t>(s.row_begin + r0) * p.q_stride + h * HD;
  for (int c = tid; c < kBM * CH; c += kThreads) {
    const int i = c / CH, ch = c % CH;
    CpAsync16(sQ + Swz<HD>(i, ch), q + static_cast<int64_t>(min(i, rows - 1)) * p.q_stride + ch * 8,
              i < rows ? 16 : 0);
  }
  // Block j of the sequence into stage `st`; slots past the sequence's end are zero-filled.
  auto load_kv = [&](int j, int st) {
    const int64_t block = p.kv.tables[s.table_offset + j];
    const uint8_t* kb = p.kv.arena + block * p.kv.block_bytes + g * p.kv.head_bytes;
    const uint8_t* vb = kb + p.kv.n_kv_heads * p.kv.head_bytes;
    const int valid = min(kBN, n_total - j * kBN);
    bf16* dk = sK + st * kBN * HD;
    bf16* dv = sV + st * kBN * HD;
    for (int c = tid; c < kBN * CH; c += kThreads) {
      const int i = c / CH, ch = c % CH;
      const int64_t off = (static_cast<int64_t>(i) * HD + ch * 8) * 2;
      const int bytes = i < valid ? 16 : 0;
      CpAsync16(dk + Swz<HD>(i, ch), kb + off, bytes);
      CpAsync16(dv + Swz<HD>(i, ch), vb + off, bytes);
    }
  };
  load_kv(0, 0);
  CpAsyncCommit();

  uint32_t qf[KT][4];
  float o[DT][4];
#pragma unroll
  for (int d = 0; d < DT; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int wr = warp * 16;                                // warp's first row in the tile
  const int lim_a = s.n_past + r0 + wr + lane / 4;         // last visible key of this thread's row
  const int mi = lane / 8;                                 // ldmatrix sub-matrix of this lane

  for (int j = 0; j < n_kt; ++j) {
    CpAsyncWaitAll();
    __syncthreads();  // block j landed; every warp is done with block j - 1
    if (j == 0) {
#pragma unroll
      for (int kk = 0; kk < KT; ++kk) LdMatrixX4(qf[kk], sQ + Swz<HD>(wr + lane % 16, kk * 2 + lane / 16));
    }
    if (j + 1 < n_kt) load_kv(j + 1, (j + 1) & 1);
    CpAsyncCommit();
    const bf16* ks = sK + (j & 1) * kBN * HD;
    const bf16* vs = sV + (j & 1) * kBN * HD;

    float sc[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < KT; ++kk) {
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t kf[4];
        LdMatrixX4(kf, ks + Swz<HD>(np * 16 + (mi / 2) * 8 + lane % 8, kk * 2 + (mi % 2)));
        MmaBf16(sc[2 * np], qf[kk], kf[0], kf[1]);
        MmaBf16(sc[2 * np + 1], qf[kk], kf[2], kf[3]);
      }
    }

    // Scale into the log2 domain, mask keys past each row's position, row maxima.
    const bool need_mask = j * kBN + kBN - 1 > s.n_past + r0 + wr;
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float v = sc[nt][e] * scale_log2;
        if (need_mask) {
          const int key = j * kBN + nt * 8 + (lane % 4) * 2 + (e & 1);
          if (key > lim_a + (e >= 2 ? 8 : 0)) v = -INFINITY;
        }
        sc[nt][e] = v;
        mx[e >> 1] = fmaxf(mx[e >> 1], v);
      }
    }
    float alpha[2], msub[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m[r], mx[r]);
      msub[r] = m_new == -INFINITY ? 0.0f : m_new;
      alpha[r] = exp2f(m[r] - msub[r]);
      m[r] = m_new;
    }
    float rs[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float pe = exp2f(sc[nt][e] - msub[e >> 1]);
        sc[nt][e] = pe;
        rs[e >> 1] += pe;
      }
    }
    l[0] = l[0] * alpha[0] + rs[0];
    l[1] = l[1] * alpha[1] + rs[1];
#pragma unroll
    for (int d = 0; d < DT; ++d) {
      o[d][0] *= alpha[0];
      o[d][1] *= alpha[0];
      o[d][2] *= alpha[1];
      o[d][3] *= alpha[1];
    }

    // O += P V_j: the S accumulators of two key n-tiles form one A fragment.
#pragma unroll
    for (int kc = 0; kc < 4; ++kc) {
      const uint32_t pa[4] = {PackBf16x2(sc[2 * kc][0], sc[2 * kc][1]), PackBf16x2(sc[2 * kc][2], sc[2 * kc][3]),
                              PackBf16x2(sc[2 * kc + 1][0], sc[2 * kc + 1][1]),
                              PackBf16x2(sc[2 * kc + 1][2], sc[2 * kc + 1][3])};
#pragma unroll
      for (int dp = 0; dp < DT / 2; ++dp) {
        uint32_t vf[4];
        LdMatrixX4Trans(vf, vs + Swz<HD>(kc * 16 + (mi % 2) * 8 + lane % 8, dp * 2 + mi / 2));
        MmaBf16(o[2 * dp], pa, vf[0], vf[1]);
        MmaBf16(o[2 * dp + 1], pa, vf[2], vf[3]);
      }
    }
  }

  // Normalize and store this thread's two rows.
  bf16* out = static_cast<bf16*>(p.out) + static_cast<int64_t>(s.row_begin + r0) * p.out_stride + h * HD;
  StoreRowPair<DT>(&o[0][0], l, lane, wr, rows, out, p.out_stride);
}

template <int HD>
Status Launch(const FlashParams& p, cudaStream_t stream) {
  constexpr int smem = (kBM + 4 * kBN) * HD * 2;
  static bool configured = false;  // the attribute is per function, set once per process
  if (!configured) {
    CUDA_CHECK(cudaFuncSetAttribute(FlashPrefillKernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    configured = true;
  }
  const dim3 grid(p.n_tiles, p.n_heads);
  FlashPrefillKernel<HD><<<grid, kThreads, smem, stream>>>(p, p.scale * 1.4426950408889634f);
  CUDA_CHECK_LAUNCH("FlashPrefillKernel");
  return OkStatus();
}

}  // namespace

bool FlashSupports(int head_dim, int block_tokens) {
  return (head_dim == 64 || head_dim == 128) && block_tokens == kFlashKeys;
}

Status LaunchFlashAttention(const FlashParams& p, cudaStream_t stream) {
  const char* name = "LaunchFlashAttention";
  SLIM_GPU_REQUIRE(FlashSupports(p.kv.head_dim, p.kv.block_tokens), name);
  SLIM_GPU_REQUIRE(p.n_heads > 0 && p.kv.n_kv_heads > 0 && p.n_heads % p.kv.n_kv_heads == 0 && p.n_heads < 65536, name);
  SLIM_GPU_REQUIRE(p.kv.head_bytes == int64_t{p.kv.block_tokens} * p.kv.head_dim * 2, name);
  SLIM_GPU_REQUIRE(p.q_stride % 8 == 0 && reinterpret_cast<uintptr_t>(p.q) % 16 == 0, name);
  SLIM_GPU_REQUIRE(p.out_stride % 2 == 0 && reinterpret_cast<uintptr_t>(p.out) % 4 == 0, name);
  SLIM_GPU_REQUIRE(reinterpret_cast<uintptr_t>(p.kv.arena) % 16 == 0 && p.kv.block_bytes % 16 == 0, name);
  SLIM_GPU_REQUIRE(p.n_tiles >= 0 && p.scale > 0.0f, name);
  if (p.n_tiles == 0) return OkStatus();
  const bool sm90 = p.kv.head_dim == 128 && FlashSm90Available();
  SLIM_GPU_REQUIRE(p.kernel != FlashKernel::kWgmma || sm90, name);
  if (sm90 && p.kernel != FlashKernel::kMmaSync) return LaunchFlashSm90(p, stream);
  return p.kv.head_dim == 64 ? Launch<64>(p, stream) : Launch<128>(p, stream);
}

}  // namespace slim::cuda
