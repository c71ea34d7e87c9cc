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

// Split kernel for 64-token blocks and head size 64 or 128: CTA = 4 warps on (split, KV head,
// item); a split is `chunks_per_split` chunks of kBlockSplitKeys keys (two whole KV blocks), each
// copied into shared memory with cp.async in one batch (K and V of both blocks: 32 or 64 KB in
// flight, one table lookup per block). Per chunk, thread t scores key t against the G query
// heads (q read as a warp-wide broadcast from shared memory; K rows XOR-swizzled by 16-byte
// chunk, so the lanes' reads of one column hit distinct banks), warp h merges head h's chunk into the split's running max and sum (online
// softmax), and each thread rescales and accumulates its 4 outputs of P V. Slots past a
// sequence's end are copied (the arena is zero-filled, so they are finite) and skipped.
template <int HD>
__global__ void __launch_bounds__(kThreads) DecodeBlockKernel(const DecodeParams p, float scale_log2) {
  constexpr int CH = HD / 8;  // 16-byte chunks per row
  constexpr int NK = kBlockSplitKeys;
  constexpr int SLOTS = (8 * HD / 4 + kThreads - 1) / kThreads;  // 4-dim outputs per thread
  static_assert(NK == kThreads, "one key per thread");
  extern __shared__ __align__(16) uint8_t smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem);      // [NK][HD]
  bf16* sV = sK + NK * HD;                       // [NK][HD]
  float* sQ = reinterpret_cast<float*>(sV + NK * HD);  // [G][HD], scaled into log2 units
  float* sP = sQ + 8 * HD;                       // [G][NK] scores, then p
  __shared__ float s_max[8], s_sum[8], s_alpha[8];

  const int split = blockIdx.x, g = blockIdx.y, item_i = blockIdx.z;
  const DecodeItem it = p.items[item_i];
  const PagedSeq s = p.kv.seqs[it.seq];
  const int G = p.n_heads / p.kv.n_kv_heads;
  const int n_keys = s.n_past + it.row + 1;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int64_t idx0 = (static_cast<int64_t>(item_i) * p.n_heads + g * G) * p.n_splits + split;
  const int key_begin = split * p.chunks_per_split * NK;
  const int key_end = min(n_keys, key_begin + p.chunks_per_split * NK);

  const bf16* qrow = static_cast<const bf16*>(p.q) + static_cast<int64_t>(s.row_begin + it.row) * p.q_stride;
  for (int e = tid; e < G * HD; e += kThreads) sQ[e] = ToF(qrow[(g * G) * HD + e]) * scale_log2;
  if (tid < 8) {
    s_max[tid] = -INFINITY;
    s_sum[tid] = 0.0f;
  }
  float acc[SLOTS][4] = {};
  // Output slot k of this thread: head *hh, dims [*d0, *d0 + 4); false past the G x HD outputs.
  auto slot = [&](int k, int* hh, int* d0) {
    const int e = tid + k * kThreads;
    *hh = (e * 4) / HD;
    *d0 = (e * 4) % HD;
    return e < G * HD / 4;
  };

  for (int k0 = key_begin; k0 < key_end; k0 += NK) {
    const int n = min(key_end - k0, NK);
    const int32_t* table = p.kv.tables + s.table_offset + k0 / 64;
    __syncthreads();  // the previous chunk's K/V, p and alpha are consumed
    for (int b = 0; b < (n + 63) / 64; ++b) {
      const uint8_t* kb = p.kv.arena + static_cast<int64_t>(table[b]) * p.kv.block_bytes + g * p.kv.head_bytes;
      const uint8_t* vb = kb + p.kv.n_kv_heads * p.kv.head_bytes;
      for (int c = tid; c < 64 * CH; c += kThreads) {
        const int row = b * 64 + c / CH;  // K rows swizzled: chunk x of row r at x ^ (r % CH)
        CpAsync16(sK + row * HD + ((c % CH) ^ (row % CH)) * 8, kb + c * 16, 16);
        CpAsync16(sV + b * 64 * HD + c * 8, vb + c * 16, 16);
      }
    }
    CpAsyncCommit();
    CpAsyncWaitAll();
    __syncthreads();

    // Scores: thread t takes key t.
    if (tid < n) {
      float d[8];
#pragma unroll
      for (int hh = 0; hh < 8; ++hh) d[hh] = 0.0f;
#pragma unroll 4
      for (int c = 0; c < CH; ++c) {  // q chunk c is the same for the warp (a broadcast)
        float kf[8];
        Bf16x8ToF(*reinterpret_cast<const uint4*>(sK + tid * HD + (c ^ (tid % CH)) * 8), kf);
#pragma unroll
        for (int hh = 0; hh < 8; ++hh) {
          if (hh >= G) break;
          const float4 qa = *reinterpret_cast<const float4*>(sQ + hh * HD + c * 8);
          const float4 qb = *reinterpret_cast<const float4*>(sQ + hh * HD + c * 8 + 4);
          d[hh] += qa.x * kf[0] + qa.y * kf[1] + qa.z * kf[2] + qa.w * kf[3] + qb.x * kf[4] + qb.y * kf[5] +
                   qb.z * kf[6] + qb.w * kf[7];
        }
      }
#pragma unroll
      for (int hh = 0; hh < 8; ++hh)
        if (hh < G) sP[hh * NK + tid] = d[hh];
    }
    __syncthreads();

    // Online softmax: warp w merges heads w, w + 4 into the split's running max and sum.
    for (int hh = warp; hh < G; hh += kThreads / 32) {
      float* sc = sP + hh * NK;
      float mx = -INFINITY;
      for (int i = lane; i < n; i += 32) mx = fmaxf(mx, sc[i]);
      mx = WarpMax(mx);
      const float m_old = s_max[hh], m_new = fmaxf(m_old, mx);
      float sum = 0.0f;
      for (int i = lane; i < NK; i += 32) {
        const float e = i < n ? exp2f(sc[i] - m_new) : 0.0f;
        sc[i] = e;
        sum += e;
      }
      sum = WarpSum(sum);
      __syncwarp();
      if (lane == 0) {
        const float alpha = exp2f(m_old - m_new);  // 0 on the first chunk (m_old = -inf)
        s_alpha[hh] = alpha;
        s_sum[hh] = s_sum[hh] * alpha + sum;
        s_max[hh] = m_new;
      }
    }
    __syncthreads();

    // P V: slot k of this thread = 4 consecutive dims of one head.
#pragma unroll
    for (int k = 0; k < SLOTS; ++k) {
      int hh, d0;
      if (!slot(k, &hh, &d0)) break;
      const float* pr = sP + hh * NK;
      const float alpha = s_alpha[hh];
      float o0 = acc[k][0] * alpha, o1 = acc[k][1] * alpha, o2 = acc[k][2] * alpha, o3 = acc[k][3] * alpha;
      for (int t = 0; t < n; ++t) {
        const uint2 u = *reinterpret_cast<const uint2*>(sV + t * HD + d0);
        const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
        const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
        const float pe = pr[t];
        o0 += pe * a.x;
        o1 += pe * a.y;
        o2 += pe * b.x;
        o3 += pe * b.y;
      }
      acc[k][0] = o0;
      acc[k][1] = o1;
      acc[k][2] = o2;
      acc[k][3] = o3;
    }
  }
  __syncthreads();

  // Partial results; a split past this item's keys leaves max -inf (the combine skips it).
#pragma unroll
  for (int k = 0; k < SLOTS; ++k) {
    int hh, d0;
    if (!slot(k, &hh, &d0)) break;
    const int64_t idx = idx0 + int64_t{hh} * p.n_splits;
    *reinterpret_cast<float4*>(p.part_o + idx * HD + d0) = make_float4(acc[k][0], acc[k][1], acc[k][2], acc[k][3]);
    if (d0 == 0) {
      p.part_ml[idx * 2] = s_max[hh];
      p.part_ml[idx * 2 + 1] = s_sum[hh];
    }
  }
}

template <int HD>
constexpr size_t BlockSmemBytes() {
  return 2 * size_t{kBlockSplitKeys} * HD * 2 + 8 * size_t{HD} * 4 + 8 * size_t{kBlockSplitKeys} * 4;
}

template <int HD>
Status LaunchBlock(const DecodeParams& p, cudaStream_t stream) {
  constexpr size_t smem = BlockSmemBytes<HD>();
  static bool configured = false;
  if (!configured) {
    CUDA_CHECK(cudaFuncSetAttribute(DecodeBlockKernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(smem)));
    configured = true;
  }
  const dim3 grid(p.n_splits, p.kv.n_kv_heads, p.n_items);
  DecodeBlockKernel<HD><<<grid, kThreads, smem, stream>>>(p, p.scale * 1.4426950408889634f);
  CUDA_CHECK_LAUNCH("DecodeBlockKernel");
  return OkStatus();
}

// One block per (head, item): kCombineGroups groups of head_dim threads, group k summing splits
// k, k + kCombineGroups, ... (independent loads in flight), then a reduction over the groups.
constexpr int kCombineGroups = 4;

__global__ void DecodeCombineKernel(const DecodeParams p, int head_dim) {
  __shared__ float s_o[kCombineGroups][256], s_l[kCombineGroups][256];
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

int DecodeChunksPerSplit(int n_items, int n_kv_heads, int max_keys, int n_sms) {
  // About one wave of CTAs (three fit on a multiprocessor) over all (item, KV head) pairs.
  const int64_t chunks = (int64_t{max_keys} + kBlockSplitKeys - 1) / kBlockSplitKeys;
  const int64_t tasks = chunks * n_items * n_kv_heads, wave = 3 * int64_t{std::max(1, n_sms)};
  return static_cast<int>(std::clamp<int64_t>((tasks + wave - 1) / wave, 1, chunks));
}

int DecodeSplits(int n_items, int n_kv_heads, int max_keys, int n_sms, int head_dim, int block_tokens) {
  if (DecodeUsesBlockKernel(head_dim, block_tokens)) {
    const int per = DecodeChunksPerSplit(n_items, n_kv_heads, max_keys, n_sms) * kBlockSplitKeys;
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
    SLIM_RETURN_IF_ERROR(p.kv.head_dim == 64 ? LaunchBlock<64>(p, stream) : LaunchBlock<128>(p, stream));
  } else {
    SLIM_RETURN_IF_ERROR(p.kv.head_dim == 16    ? LaunchFor<16>(p, stream)
                       : p.kv.head_dim == 32  ? LaunchFor<32>(p, stream)
                       : p.kv.head_dim == 64  ? LaunchFor<64>(p, stream)
                       : p.kv.head_dim == 128 ? LaunchFor<128>(p, stream)
                                              : LaunchFor<256>(p, stream));
  }
  const dim3 grid(p.n_heads, p.n_items);
  DecodeCombineKernel<<<grid, kCombineGroups * p.kv.head_dim, 0, stream>>>(p, p.kv.head_dim);
  CUDA_CHECK_LAUNCH("DecodeCombineKernel");
  return OkStatus();
}

}  // namespace slim::cuda
