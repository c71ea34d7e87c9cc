// Kernels: split-K paged decode attention and the combine of the splits; launcher below.
//
// Split kernel, CTA = 4 warps on (split, KV head, item): a key group of HD/8 lanes reads one
// key's K and V row (16 bytes a lane), the group's lanes reduce q.k by shuffles; each group keeps
// an online softmax per query head of the KV head; groups merge in shared memory and the CTA
// writes (max, sum, unnormalized output) per head for its key range.
#include "engine/backend/cuda/decode_attention.h"

#include <algorithm>
#include <cmath>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"

namespace slim::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kUnroll = 4;  // keys in flight per group

template <int HD, int MAXG>
__global__ void __launch_bounds__(kThreads) DecodeSplitKernel(const DecodeParams p, float scale_log2) {
  constexpr int LPK = HD / 8;             // lanes per key
  constexpr int KPW = 32 / LPK;           // key groups per warp
  constexpr int NG = (kThreads / 32) * KPW;
  extern __shared__ float sm[];
  const int split = blockIdx.x, g = blockIdx.y, item_i = blockIdx.z;
  const DecodeItem it = p.items[item_i];
  const PagedSeq s = p.kv.seqs[it.seq];
  const int G = p.n_heads / p.kv.n_kv_heads;
  const int n_keys = s.n_past + it.row + 1;
  const int per_split = (n_keys + p.n_splits - 1) / p.n_splits;
  const int k0 = split * per_split, k1 = min(n_keys, k0 + per_split);
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
  float m[MAXG], l[MAXG], acc[MAXG][8];
#pragma unroll
  for (int hh = 0; hh < MAXG; ++hh) {
    m[hh] = -INFINITY;
    l[hh] = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[hh][i] = 0.0f;
  }
  const int64_t k_off = g * p.kv.head_bytes + gl * 16;
  const int64_t v_off = (p.kv.n_kv_heads + g) * p.kv.head_bytes + gl * 16;
  const int32_t* table = p.kv.tables + s.table_offset;

  // The trip count is the same for every lane: the shuffles below need the whole warp.
  for (int t0 = k0 + grp; t0 - grp < k1; t0 += NG * kUnroll) {
    uint4 kx[kUnroll], vx[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = t0 + u * NG;
      kx[u] = vx[u] = make_uint4(0, 0, 0, 0);
      if (t < k1) {
        const uint8_t* base = p.kv.arena + static_cast<int64_t>(table[t / p.kv.block_tokens]) * p.kv.block_bytes +
                              static_cast<int64_t>(t % p.kv.block_tokens) * HD * 2;
        kx[u] = *reinterpret_cast<const uint4*>(base + k_off);
        vx[u] = *reinterpret_cast<const uint4*>(base + v_off);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const bool valid = t0 + u * NG < k1;
      float kf[8], vf[8];
      Bf16x8ToF(kx[u], kf);
      Bf16x8ToF(vx[u], vf);
#pragma unroll
      for (int hh = 0; hh < MAXG; ++hh) {
        if (hh >= G) break;
        float d = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; ++i) d += qv[hh][i] * kf[i];
#pragma unroll
        for (int o = LPK / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        if (valid) {
          const float m_new = fmaxf(m[hh], d);
          const float a = exp2f(m[hh] - m_new), pe = exp2f(d - m_new);
          l[hh] = l[hh] * a + pe;
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[hh][i] = acc[hh][i] * a + pe * vf[i];
          m[hh] = m_new;
        }
      }
    }
  }

  // Merge the key groups: shared [NG][G][HD] outputs, then [NG][G] maxima and sums.
  float* s_acc = sm;
  float* s_m = sm + NG * G * HD;
  float* s_l = s_m + NG * G;
#pragma unroll
  for (int hh = 0; hh < MAXG; ++hh) {
    if (hh >= G) break;
#pragma unroll
    for (int i = 0; i < 8; ++i) s_acc[(grp * G + hh) * HD + gl * 8 + i] = acc[hh][i];
    if (gl == 0) {
      s_m[grp * G + hh] = m[hh];
      s_l[grp * G + hh] = l[hh];
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < G * HD; e += kThreads) {
    const int hh = e / HD, d = e % HD;
    float mx = -INFINITY;
    for (int q = 0; q < NG; ++q) mx = fmaxf(mx, s_m[q * G + hh]);
    float sum = 0.0f, o = 0.0f;
    if (mx != -INFINITY) {
      for (int q = 0; q < NG; ++q) {
        const float w = exp2f(s_m[q * G + hh] - mx);
        sum += s_l[q * G + hh] * w;
        o += s_acc[(q * G + hh) * HD + d] * w;
      }
    }
    const int64_t idx = (static_cast<int64_t>(item_i) * p.n_heads + g * G + hh) * p.n_splits + split;
    p.part_o[idx * HD + d] = o;
    if (d == 0) {
      p.part_ml[idx * 2] = mx;
      p.part_ml[idx * 2 + 1] = sum;
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
  constexpr int NG = (kThreads / 32) * (32 / (HD / 8));
  const int G = p.n_heads / p.kv.n_kv_heads;
  const size_t smem = (static_cast<size_t>(NG) * G * HD + 2 * NG * G) * sizeof(float);
  static bool configured = false;
  if (!configured) {
    CUDA_CHECK(cudaFuncSetAttribute(DecodeSplitKernel<HD, MAXG>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>((static_cast<size_t>(NG) * MAXG * HD + 2 * NG * MAXG) * 4)));
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
  return std::min({want, most, 1024});
}

Status LaunchDecodeAttention(const DecodeParams& p, cudaStream_t stream) {
  const char* name = "LaunchDecodeAttention";
  SLIM_GPU_REQUIRE(p.n_heads > 0 && p.kv.n_kv_heads > 0 && p.n_heads % p.kv.n_kv_heads == 0, name);
  SLIM_GPU_REQUIRE(DecodeSupports(p.kv.head_dim, p.n_heads / p.kv.n_kv_heads), name);
  SLIM_GPU_REQUIRE(p.kv.head_bytes == int64_t{p.kv.block_tokens} * p.kv.head_dim * 2, name);
  SLIM_GPU_REQUIRE(p.q_stride % 8 == 0 && reinterpret_cast<uintptr_t>(p.q) % 16 == 0, name);
  SLIM_GPU_REQUIRE(reinterpret_cast<uintptr_t>(p.kv.arena) % 16 == 0 && p.kv.block_bytes % 16 == 0, name);
  SLIM_GPU_REQUIRE(p.n_items >= 0 && p.n_items < 65536 && p.n_splits >= 1 && p.n_splits <= 65535, name);
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
