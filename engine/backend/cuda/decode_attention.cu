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

// One block per (head, item), one thread per output dim.
__global__ void DecodeCombineKernel(const DecodeParams p, int head_dim) {
  const int h = blockIdx.x, item_i = blockIdx.y;
  const DecodeItem it = p.items[item_i];
  const PagedSeq s = p.kv.seqs[it.seq];
  const int64_t idx0 = (static_cast<int64_t>(item_i) * p.n_heads + h) * p.n_splits;
  float mx = -INFINITY;
  for (int k = 0; k < p.n_splits; ++k) mx = fmaxf(mx, p.part_ml[(idx0 + k) * 2]);
  bf16* out = static_cast<bf16*>(p.out) + static_cast<int64_t>(s.row_begin + it.row) * p.out_stride + h * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float sum = 0.0f, o = 0.0f;
    for (int k = 0; k < p.n_splits; ++k) {
      const float mk = p.part_ml[(idx0 + k) * 2];
      if (mk == -INFINITY) continue;
      const float w = exp2f(mk - mx);
      sum += p.part_ml[(idx0 + k) * 2 + 1] * w;
      o += p.part_o[(idx0 + k) * head_dim + d] * w;
    }
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

int DecodeSplits(int n_items, int n_kv_heads, int max_keys, int n_sms) {
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
  SLIM_GPU_REQUIRE(p.kv.block_tokens > 0, name);
  SLIM_GPU_REQUIRE(p.part_o != nullptr && p.part_ml != nullptr, name);
  if (p.n_items == 0) return OkStatus();
  SLIM_RETURN_IF_ERROR(p.kv.head_dim == 16    ? LaunchFor<16>(p, stream)
                       : p.kv.head_dim == 32  ? LaunchFor<32>(p, stream)
                       : p.kv.head_dim == 64  ? LaunchFor<64>(p, stream)
                       : p.kv.head_dim == 128 ? LaunchFor<128>(p, stream)
                                              : LaunchFor<256>(p, stream));
  const dim3 grid(p.n_heads, p.n_items);
  DecodeCombineKernel<<<grid, std::min(p.kv.head_dim, 256), 0, stream>>>(p, p.kv.head_dim);
  CUDA_CHECK_LAUNCH("DecodeCombineKernel");
  return OkStatus();
}

}  // namespace slim::cuda
