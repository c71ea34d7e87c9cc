// Kernels: split-K paged decode attention and the combine of the splits; launcher below.
//
// Split kernel, CTA = 4 warps on (split, KV head, item), over at most kMaxSplitKeys keys, in
// three phases with no per-key rescaling:
//   1. scores: a key group of HD/8 lanes reads one key's K row (16 bytes a lane, kUnroll keys
//      in flight) and reduces q.k for the G query heads of the KV head by shuffles -> shared;
//   2. per head: max and exp2 over the split's scores, their sum (block reductions);
//   3. P V: key groups again, V rows, fp32 accumulators merged across groups in shared memory.
// Output per (item, head, split): the unnormalized sum, the max (log2 domain) and the sum of p.
#include "engine/backend/cuda/decode_attention.h"

#include <algorithm>
#include <cmath>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"

namespace slim::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kUnroll = 8;  // keys in flight per group

template <int HD, int MAXG>
constexpr size_t SplitSmemBytes() {
  constexpr int NG = (kThreads / 32) * (32 / (HD / 8));
  return (static_cast<size_t>(MAXG) * kMaxSplitKeys + static_cast<size_t>(NG) * MAXG * HD) * sizeof(float);
}

template <int HD, int MAXG>
__global__ void __launch_bounds__(kThreads) DecodeSplitKernel(const DecodeParams p, float scale_log2) {
  constexpr int LPK = HD / 8;             // lanes per key
  constexpr int KPW = 32 / LPK;           // key groups per warp
  constexpr int NG = (kThreads / 32) * KPW;
  extern __shared__ float sm[];
  float* s_p = sm;                                  // [MAXG][kMaxSplitKeys] scores, then p
  float* s_acc = sm + MAXG * kMaxSplitKeys;         // [NG][G][HD]
  __shared__ float s_max[MAXG], s_sum[MAXG];
  const int split = blockIdx.x, g = blockIdx.y, item_i = blockIdx.z;
  const DecodeItem it = p.items[item_i];
  const PagedSeq s = p.kv.seqs[it.seq];
  const int G = p.n_heads / p.kv.n_kv_heads;
  const int n_keys = s.n_past + it.row + 1;
  const int per_split = (n_keys + p.n_splits - 1) / p.n_splits;
  const int k0 = split * per_split;
  const int n = max(0, min(n_keys, k0 + per_split) - k0);  // keys of this split, <= kMaxSplitKeys
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int gl = lane % LPK, grp = warp * KPW + lane / LPK;

  float qv[MAXG][8];
  const bf16* qrow = static_cast<const bf16*>(p.q) + static_cast<int64_t>(s.row_begin + it.row) * p.q_stride;
#pragma unroll
  for (int hh = 0; hh < MAXG; ++hh) {
    if (hh < G) {
      Bf16x8ToF(*reinterpret_cast<const uint4*>(qrow + (g * G + hh) * HD + gl * 8), qv[hh]);
#pragma unroll
      for (int i = 0; i < 8; ++i) qv[hh][i] *= scale_log2;
    }
  }
  const int32_t* table = p.kv.tables + s.table_offset;
  const int64_t k_off = g * p.kv.head_bytes + gl * 16;
  const int64_t v_off = (p.kv.n_kv_heads + g) * p.kv.head_bytes + gl * 16;
  auto row_of = [&](int t) {  // K row of key k0 + t (add v_off - k_off for V)
    const int key = k0 + t;
    return p.kv.arena + static_cast<int64_t>(table[key / p.kv.block_tokens]) * p.kv.block_bytes +
           static_cast<int64_t>(key % p.kv.block_tokens) * HD * 2;
  };

  // 1. Scores. The trip count is the same for every lane: the shuffles need the whole warp.
  for (int base = 0; base < n; base += NG * kUnroll) {
    uint4 kx[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + grp + u * NG;
      kx[u] = t < n ? *reinterpret_cast<const uint4*>(row_of(t) + k_off) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + grp + u * NG;
      float kf[8];
      Bf16x8ToF(kx[u], kf);
#pragma unroll
      for (int hh = 0; hh < MAXG; ++hh) {
        if (hh >= G) break;
        float d = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; ++i) d += qv[hh][i] * kf[i];
#pragma unroll
        for (int o = LPK / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        if (t < n && gl == 0) s_p[hh * kMaxSplitKeys + t] = d;
      }
    }
  }
  __syncthreads();

  // 2. Softmax statistics per head over this split.
  for (int hh = 0; hh < G; ++hh) {
    float* sc = s_p + hh * kMaxSplitKeys;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < n; i += kThreads) mx = fmaxf(mx, sc[i]);
    mx = BlockMax(mx);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < n; i += kThreads) {
      const float e = exp2f(sc[i] - mx);
      sc[i] = e;
      sum += e;
    }
    sum = BlockSum(sum);
    if (threadIdx.x == 0) {
      s_max[hh] = mx;
      s_sum[hh] = sum;
    }
  }
  __syncthreads();

  // 3. P V over the same keys.
  float acc[MAXG][8];
#pragma unroll
  for (int hh = 0; hh < MAXG; ++hh)
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[hh][i] = 0.0f;
  for (int base = 0; base < n; base += NG * kUnroll) {
    uint4 vx[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + grp + u * NG;
      vx[u] = t < n ? *reinterpret_cast<const uint4*>(row_of(t) + v_off) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + grp + u * NG;
      if (t >= n) break;
      float vf[8];
      Bf16x8ToF(vx[u], vf);
#pragma unroll
      for (int hh = 0; hh < MAXG; ++hh) {
        if (hh >= G) break;
        const float pe = s_p[hh * kMaxSplitKeys + t];
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[hh][i] += pe * vf[i];
      }
    }
  }
#pragma unroll
  for (int hh = 0; hh < MAXG; ++hh) {
    if (hh >= G) break;
#pragma unroll
    for (int i = 0; i < 8; ++i) s_acc[(grp * G + hh) * HD + gl * 8 + i] = acc[hh][i];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < G * HD; e += kThreads) {
    const int hh = e / HD, d = e % HD;
    float o = 0.0f;
    for (int q = 0; q < NG; ++q) o += s_acc[(q * G + hh) * HD + d];
    const int64_t idx = (static_cast<int64_t>(item_i) * p.n_heads + g * G + hh) * p.n_splits + split;
    p.part_o[idx * HD + d] = o;
    if (d == 0) {
      p.part_ml[idx * 2] = s_max[hh];
      p.part_ml[idx * 2 + 1] = s_sum[hh];
    }
  }
}

// Block kernel for 64-token KV blocks and head size 64 or 128 (tensor cores): CTA = 4 warps on
// (split, KV head, item); a split is `chunks_per_split` consecutive KV blocks, streamed through a
// kStages-deep ring of shared-memory stages by cp.async (K and V of one block per stage, 16-byte
// chunks XOR-swizzled by row), so kStages - 1 blocks are in flight while one is computed. Per
// block, warp w takes keys [16 w, 16 w + 16): S = Q K^T by mma.sync m16n8k16 with the G query
// heads of the KV head as the rows of the A tile (rows G..15 are zero), an online softmax per
// head in the log2 domain, O += P V (P rounded to bf16, as the flash kernels). Each warp keeps its
// own (max, sum, O) over its keys; the four are merged through shared memory at the end into
// the split's partial result. Slots past a sequence's end are masked (the arena is zero-filled,
// so what they hold is finite).
template <int HD, int STAGES>
struct BlockCfg {
  static constexpr int kStages = STAGES;
  static constexpr size_t kStageBytes = size_t{2} * kBlockSplitKeys * HD * 2;  // K and V
  static constexpr size_t kSmem = kStages * kStageBytes;
};

// Pipeline depth by head size: 3 x 32 KB (two CTAs a multiprocessor) for head size 128; 4 or 6
// stages (one CTA) ran no faster on the H200 (bench/cuda-decode.md).
constexpr int StagesFor(int head_dim) { return head_dim == 128 ? 3 : 4; }

template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

template <int HD>
__device__ __forceinline__ int SwzOff(int r, int ch) {  // element offset of chunk ch of row r
  return r * HD + ((ch ^ (r & 7)) * 8);
}

template <int HD, int STAGES>
__global__ void __launch_bounds__(kThreads) DecodeBlockKernel(const DecodeParams p, float scale_log2) {
  constexpr int CH = HD / 8;   // 16-byte chunks per row
  constexpr int KT = HD / 16;  // k-steps of Q K^T
  constexpr int DT = HD / 8;   // n-tiles of O
  constexpr int NK = kBlockSplitKeys;
  constexpr int S = STAGES;
  static_assert(NK == 64 && kThreads == 128, "4 warps x 16 keys per block");
  extern __shared__ __align__(128) uint8_t smem[];
  bf16* sKV = reinterpret_cast<bf16*>(smem);  // [S][K, V][NK][HD]
  PdlWait();  // q and the newest K/V come from the kernels just before

  const int split = blockIdx.x, g = blockIdx.y, item_i = blockIdx.z;
  const DecodeItem it = p.items[item_i];
  const PagedSeq s = p.kv.seqs[it.seq];
  const int G = p.n_heads / p.kv.n_kv_heads;
  const int n_keys = s.n_past + it.row + 1;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, mi = lane / 8, gid = lane / 4;
  const int blk_begin = split * p.chunks_per_split;
  const int blk_end = min((n_keys + NK - 1) / NK, blk_begin + p.chunks_per_split);
  const int nblk = max(0, blk_end - blk_begin);
  const int32_t* table = p.kv.tables + s.table_offset;

  auto load = [&](int i, int st) {  // block blk_begin + i into stage st
    const uint8_t* kb =
        p.kv.arena + static_cast<int64_t>(table[blk_begin + i]) * p.kv.block_bytes + g * p.kv.head_bytes;
    const uint8_t* vb = kb + p.kv.n_kv_heads * p.kv.head_bytes;
    bf16* dk = sKV + st * 2 * NK * HD;
    bf16* dv = dk + NK * HD;
#pragma unroll
    for (int c = tid; c < NK * CH; c += kThreads) {
      const int r = c / CH, ch = c % CH;
      CpAsync16(dk + SwzOff<HD>(r, ch), kb + c * 16, 16);
      CpAsync16(dv + SwzOff<HD>(r, ch), vb + c * 16, 16);
    }
  };
#pragma unroll
  for (int st = 0; st < S - 1; ++st) {
    if (st < nblk) load(st, st);
    CpAsyncCommit();
  }

  // Q as the A operand: row gid = query head g * G + gid (zero for gid >= G), rows 8..15 zero.
  uint32_t qf[KT][4];
  const bf16* qrow = static_cast<const bf16*>(p.q) + static_cast<int64_t>(s.row_begin + it.row) * p.q_stride +
                     static_cast<int64_t>(g * G + min(gid, G - 1)) * HD + (lane % 4) * 2;
#pragma unroll
  for (int kk = 0; kk < KT; ++kk) {
    qf[kk][0] = gid < G ? *reinterpret_cast<const uint32_t*>(qrow + kk * 16) : 0u;
    qf[kk][1] = 0u;
    qf[kk][2] = gid < G ? *reinterpret_cast<const uint32_t*>(qrow + kk * 16 + 8) : 0u;
    qf[kk][3] = 0u;
  }
  float o[DT][4];
#pragma unroll
  for (int d = 0; d < DT; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
  float m = -INFINITY, l = 0.0f;  // this thread's row gid over the warp's keys

  for (int i = 0; i < nblk; ++i) {
    CpAsyncWait<S - 2>();
    __syncthreads();  // block i landed; every warp is done with the stage refilled next
    if (i + S - 1 < nblk) load(i + S - 1, (i + S - 1) % S);
    CpAsyncCommit();
    const bf16* ks = sKV + (i % S) * 2 * NK * HD;
    const bf16* vs = ks + NK * HD;
    const int kw = warp * 16;  // the warp's keys in the block

    float sc[2][4] = {};
#pragma unroll
    for (int kk = 0; kk < KT; ++kk) {
      uint32_t kf[4];
      LdMatrixX4(kf, ks + SwzOff<HD>(kw + (mi / 2) * 8 + lane % 8, kk * 2 + (mi % 2)));
      MmaBf16(sc[0], qf[kk], kf[0], kf[1]);
      MmaBf16(sc[1], qf[kk], kf[2], kf[3]);
    }
    const int key0 = (blk_begin + i) * NK + kw + (lane % 4) * 2;
    float mx = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float v = key0 + nt * 8 + e < n_keys ? sc[nt][e] * scale_log2 : -INFINITY;
        sc[nt][e] = v;
        mx = fmaxf(mx, v);
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m, mx);
    const float msub = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = exp2f(m - msub);
    m = m_new;
    float rs = 0.0f;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        sc[nt][e] = exp2f(sc[nt][e] - msub);
        rs += sc[nt][e];
      }
    }
    l = l * alpha + rs;
#pragma unroll
    for (int d = 0; d < DT; ++d) {
      o[d][0] *= alpha;
      o[d][1] *= alpha;
    }
    const uint32_t pa[4] = {PackBf16x2(sc[0][0], sc[0][1]), 0u, PackBf16x2(sc[1][0], sc[1][1]), 0u};
#pragma unroll
    for (int dp = 0; dp < DT / 2; ++dp) {
      uint32_t vf[4];
      LdMatrixX4Trans(vf, vs + SwzOff<HD>(kw + (mi % 2) * 8 + lane % 8, dp * 2 + mi / 2));
      MmaBf16(o[2 * dp], pa, vf[0], vf[1]);
      MmaBf16(o[2 * dp + 1], pa, vf[2], vf[3]);
    }
  }
  CpAsyncWait<0>();
  PdlTrigger();     // late: the next kernel's CTAs take SM slots only as these finish
  __syncthreads();  // the stages are free: reuse them for the merge of the warps

  // Merge: warp w's (m, l, O) of head gid -> shared, then per output (head, dim) across warps.
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  float* sO = reinterpret_cast<float*>(smem);          // [4 warps][8 heads][HD]
  float* sM = sO + 4 * 8 * HD;                         // [4][8]
  float* sL = sM + 4 * 8;                              // [4][8]
  if (gid < G) {
#pragma unroll
    for (int d = 0; d < DT; ++d) {
      const int col = d * 8 + (lane % 4) * 2;
      sO[(warp * 8 + gid) * HD + col] = o[d][0];
      sO[(warp * 8 + gid) * HD + col + 1] = o[d][1];
    }
    if (lane % 4 == 0) {
      sM[warp * 8 + gid] = m;
      sL[warp * 8 + gid] = l;
    }
  }
  __syncthreads();
  const int64_t idx0 = (static_cast<int64_t>(item_i) * p.n_heads + g * G) * p.n_splits + split;
  for (int e = tid; e < G * HD; e += kThreads) {
    const int hh = e / HD, d = e % HD;
    float mm = -INFINITY;
#pragma unroll
    for (int w = 0; w < 4; ++w) mm = fmaxf(mm, sM[w * 8 + hh]);
    float acc = 0.0f, sum = 0.0f;
    if (mm != -INFINITY) {
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        const float f = exp2f(sM[w * 8 + hh] - mm);  // 0 for a warp that saw no key
        acc += f * sO[(w * 8 + hh) * HD + d];
        sum += f * sL[w * 8 + hh];
      }
    }
    const int64_t idx = idx0 + int64_t{hh} * p.n_splits;
    p.part_o[idx * HD + d] = acc;
    if (d == 0) {
      p.part_ml[idx * 2] = mm;  // -inf for a split past this item's keys (the combine skips it)
      p.part_ml[idx * 2 + 1] = sum;
    }
  }
}

template <int HD, int STAGES>
Status LaunchBlock(const DecodeParams& p, cudaStream_t stream) {
  constexpr size_t smem = BlockCfg<HD, STAGES>::kSmem;
  static_assert(smem >= (4 * 8 * HD + 64) * sizeof(float), "the merge reuses the stages");
  static bool configured = false;
  if (!configured) {
    CUDA_CHECK(cudaFuncSetAttribute(DecodeBlockKernel<HD, STAGES>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(smem)));
    configured = true;
  }
  const dim3 grid(p.n_splits, p.kv.n_kv_heads, p.n_items);
  CUDA_CHECK(LaunchPdl(DecodeBlockKernel<HD, STAGES>, grid, dim3(kThreads), smem, stream, p,
                       p.scale * 1.4426950408889634f));
  return OkStatus();
}

template <int HD>
Status LaunchBlockFor(const DecodeParams& p, cudaStream_t stream) {
  return LaunchBlock<HD, StagesFor(HD)>(p, stream);
}

// One block per (head, item): kCombineGroups groups of head_dim threads, group k summing splits
// k, k + kCombineGroups, ... (independent loads in flight), then a reduction over the groups.
constexpr int kCombineGroups = 4;

__global__ void DecodeCombineKernel(const DecodeParams p, int head_dim) {
  __shared__ float s_o[kCombineGroups][256], s_l[kCombineGroups][256];
  PdlTrigger();
  PdlWait();
  const int h = blockIdx.x, item_i = blockIdx.y;
  const DecodeItem it = p.items[item_i];
  const PagedSeq s = p.kv.seqs[it.seq];
  const int64_t idx0 = (static_cast<int64_t>(item_i) * p.n_heads + h) * p.n_splits;
  float mx = -INFINITY;
  for (int k = threadIdx.x; k < p.n_splits; k += blockDim.x) mx = fmaxf(mx, p.part_ml[(idx0 + k) * 2]);
  mx = BlockMax(mx);
  const int d = threadIdx.x % head_dim, grp = threadIdx.x / head_dim;
  float sum = 0.0f, o = 0.0f;
  if (grp < kCombineGroups) {
#pragma unroll 4
    for (int k = grp; k < p.n_splits; k += kCombineGroups) {
      const float mk = p.part_ml[(idx0 + k) * 2];
      const float w = mk == -INFINITY ? 0.0f : exp2f(mk - mx);
      sum += p.part_ml[(idx0 + k) * 2 + 1] * w;
      o += p.part_o[(idx0 + k) * head_dim + d] * w;
    }
    s_o[grp][d] = o;
    s_l[grp][d] = sum;
  }
  __syncthreads();
  if (grp == 0) {
    for (int q = 1; q < kCombineGroups; ++q) {
      o += s_o[q][d];
      sum += s_l[q][d];
    }
    bf16* out = static_cast<bf16*>(p.out) + static_cast<int64_t>(s.row_begin + it.row) * p.out_stride + h * head_dim;
    out[d] = __float2bfloat16_rn(o / sum);
  }
}

template <int HD, int MAXG>
Status LaunchSplit(const DecodeParams& p, cudaStream_t stream) {
  constexpr size_t smem = SplitSmemBytes<HD, MAXG>();
  static bool configured = false;
  if (!configured) {
    CUDA_CHECK(cudaFuncSetAttribute(DecodeSplitKernel<HD, MAXG>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(smem)));
    configured = true;
  }
  const dim3 grid(p.n_splits, p.kv.n_kv_heads, p.n_items);
  DecodeSplitKernel<HD, MAXG><<<grid, kThreads, smem, stream>>>(p, p.scale * 1.4426950408889634f);
  CUDA_CHECK_LAUNCH("DecodeSplitKernel");
  return OkStatus();
}

template <int HD>
Status LaunchFor(const DecodeParams& p, cudaStream_t stream) {
  const int G = p.n_heads / p.kv.n_kv_heads;
  return G <= 4 ? LaunchSplit<HD, 4>(p, stream) : LaunchSplit<HD, 8>(p, stream);
}

}  // namespace

bool DecodeSupports(int head_dim, int group) {
  return (head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256) && group >= 1 &&
         group <= 8;
}

bool DecodeUsesBlockKernel(int head_dim, int block_tokens) {
  return (head_dim == 64 || head_dim == 128) && block_tokens == 64;
}

int DecodeCtasPerSm(int head_dim) {
  // Shared memory per CTA: stages x K and V of one block (32 KB for head size 128), of 227 KB.
  const int stage_kb = 2 * kBlockSplitKeys * head_dim * 2 / 1024;
  return std::max(1, 227 / (StagesFor(head_dim) * stage_kb + 1));
}

int DecodeChunksPerSplit(int n_items, int n_kv_heads, int max_keys, int n_sms, int head_dim) {
  // About one wave of CTAs over all (item, KV head) pairs.
  const int64_t chunks = (int64_t{max_keys} + kBlockSplitKeys - 1) / kBlockSplitKeys;
  const int64_t tasks = chunks * n_items * n_kv_heads;
  const int64_t wave = int64_t{DecodeCtasPerSm(head_dim)} * std::max(1, n_sms);
  return static_cast<int>(std::clamp<int64_t>((tasks + wave - 1) / wave, 1, chunks));
}

int DecodeSplits(int n_items, int n_kv_heads, int max_keys, int n_sms, int head_dim, int block_tokens) {
  if (DecodeUsesBlockKernel(head_dim, block_tokens)) {
    const int per = DecodeChunksPerSplit(n_items, n_kv_heads, max_keys, n_sms, head_dim) * kBlockSplitKeys;
    return std::max(1, (max_keys + per - 1) / per);
  }
  const int want = std::max(1, (4 * n_sms + n_items * n_kv_heads - 1) / std::max(1, n_items * n_kv_heads));
  const int most = std::max(1, (max_keys + 127) / 128);  // at least 128 keys a split
  const int least = (max_keys + kMaxSplitKeys - 1) / kMaxSplitKeys;  // at most kMaxSplitKeys
  return std::max(least, std::min(want, most));
}

Status LaunchDecodeAttention(const DecodeParams& p, cudaStream_t stream) {
  const char* name = "LaunchDecodeAttention";
  SLIM_GPU_REQUIRE(p.n_heads > 0 && p.kv.n_kv_heads > 0 && p.n_heads % p.kv.n_kv_heads == 0, name);
  SLIM_GPU_REQUIRE(DecodeSupports(p.kv.head_dim, p.n_heads / p.kv.n_kv_heads), name);
  SLIM_GPU_REQUIRE(p.kv.head_bytes == int64_t{p.kv.block_tokens} * p.kv.head_dim * 2, name);
  SLIM_GPU_REQUIRE(p.q_stride % 8 == 0 && reinterpret_cast<uintptr_t>(p.q) % 16 == 0, name);
  SLIM_GPU_REQUIRE(reinterpret_cast<uintptr_t>(p.kv.arena) % 16 == 0 && p.kv.block_bytes % 16 == 0, name);
  SLIM_GPU_REQUIRE(p.n_items >= 0 && p.n_items < 65536 && p.n_splits >= 1 && p.n_splits <= 65535, name);
  SLIM_GPU_REQUIRE(p.chunks_per_split >= 1, name);
  SLIM_GPU_REQUIRE(p.kv.block_tokens > 0, name);
  SLIM_GPU_REQUIRE(p.part_o != nullptr && p.part_ml != nullptr, name);
  if (p.n_items == 0) return OkStatus();
  if (DecodeUsesBlockKernel(p.kv.head_dim, p.kv.block_tokens)) {
    SLIM_RETURN_IF_ERROR(p.kv.head_dim == 64 ? LaunchBlockFor<64>(p, stream) : LaunchBlockFor<128>(p, stream));
  } else {
    SLIM_RETURN_IF_ERROR(p.kv.head_dim == 16    ? LaunchFor<16>(p, stream)
                       : p.kv.head_dim == 32  ? LaunchFor<32>(p, stream)
                       : p.kv.head_dim == 64  ? LaunchFor<64>(p, stream)
                       : p.kv.head_dim == 128 ? LaunchFor<128>(p, stream)
                                              : LaunchFor<256>(p, stream));
  }
  const dim3 grid(p.n_heads, p.n_items);
  CUDA_CHECK(LaunchPdl(DecodeCombineKernel, grid, dim3(kCombineGroups * p.kv.head_dim), 0, stream, p, p.kv.head_dim));
  return OkStatus();
}

}  // namespace slim::cuda
