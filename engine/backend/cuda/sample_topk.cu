// Kernels of the logits summary: penalize in place (saving the raw logits); per (row, chunk) the
// max, the partial exp-sum and the chunk's k best by radix select; per row the merge of its
// chunks, a bitonic sort of the k best and the restore of the raw logits. Launcher below.
//
// Order: a logit's 32-bit key orders like the float (-0 and +0 share one key, as they compare
// equal); among equal keys the lower id wins, which the selection keeps by walking candidates
// in id order (chunks in order, and each chunk's picks written in order).
#include "engine/backend/cuda/sample_topk.h"

#include <cfloat>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"

namespace slim::cuda {
namespace {

constexpr int kChunk = 4096;  // logits per block of the chunk pass
constexpr int kChunkThreads = 256;
constexpr int kMergeThreads = 1024;
constexpr int kPenaltyThreads = 128;
constexpr int kSortSize = 256;  // power of two >= kMaxSummaryK
static_assert(kSortSize >= kMaxSummaryK && (kSortSize & (kSortSize - 1)) == 0);
static_assert(sizeof(SummaryRowArgs) == 32 && sizeof(SummaryRowOut) == 16 && sizeof(TopLogit) == 8);

// ---- helpers -------------------------------------------------------------------------------

// Unsigned key with the order of the (non-NaN) float.
__device__ __forceinline__ uint32_t OrderKey(float v) {
  if (v == 0.0f) v = 0.0f;  // -0 -> +0
  const uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float KeyValue(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

__device__ __forceinline__ double BlockSumDouble(double v) {
  __shared__ double partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // partial[] may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  double t = lane < n_warps ? partial[lane] : 0.0;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
  return t;
}

// Exclusive prefix sum of v over the block in thread order.
__device__ __forceinline__ int BlockExclusiveScan(int v) {
  __shared__ int warp_sums[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  int incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int t = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += t;
  }
  __syncthreads();  // warp_sums[] may still be read by a previous call
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int w = lane < n_warps ? warp_sums[lane] : 0;
    int wi = w;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int t = __shfl_up_sync(0xffffffffu, wi, o);
      if (lane >= o) wi += t;
    }
    if (lane < n_warps) warp_sums[lane] = wi - w;
  }
  __syncthreads();
  return warp_sums[warp] + incl - v;
}

struct Threshold {
  uint32_t key;    // the k-th largest key
  int take_equal;  // how many keys equal to it are among the k largest
};

// Radix select over keys[0, n) (shared memory), 1 <= k <= n, 8 bits per pass from the top.
__device__ Threshold RadixSelect(const uint32_t* keys, int n, int k) {
  __shared__ int hist[256];
  __shared__ int sel_bin, sel_remaining;
  uint32_t prefix = 0, mask = 0;
  int remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const uint32_t key = keys[i];
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1);
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      // Lane l owns bins 255 - 8l - j (j = 0..7): a descending walk over lanes and their bins.
      const int lane = threadIdx.x;
      int own = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) own += hist[255 - 8 * lane - j];
      int incl = own;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
      }
      const int excl = incl - own;
      if (excl < remaining && remaining <= incl) {
        int cum = excl;
        for (int j = 0; j < 8; ++j) {
          const int bin = 255 - 8 * lane - j;
          if (cum + hist[bin] >= remaining) {
            sel_bin = bin;
            sel_remaining = remaining - cum;
            break;
          }
          cum += hist[bin];
        }
      }
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(sel_bin) << shift;
    mask |= 255u << shift;
    remaining = sel_remaining;
  }
  return {prefix, remaining};
}

// The k largest of keys[0, n) (shared memory; ids[i], or base + i when ids is null) to
// out_keys / out_ids [0, k), in array order; of the keys equal to the threshold the earliest go.
// 1 <= k <= n. Every thread of the block calls it.
__device__ void SelectTopK(const uint32_t* keys, const int32_t* ids, int32_t base, int n, int k,
                           uint32_t* out_keys, int32_t* out_ids) {
  const Threshold t = RadixSelect(keys, n, k);
  const int per = (n + static_cast<int>(blockDim.x) - 1) / static_cast<int>(blockDim.x);
  const int lo = min(n, static_cast<int>(threadIdx.x) * per), hi = min(n, lo + per);
  int eq = 0, gt = 0;
  for (int i = lo; i < hi; ++i) {
    eq += keys[i] == t.key;
    gt += keys[i] > t.key;
  }
  const int eq_before = BlockExclusiveScan(eq);
  const int taken_eq = max(0, min(eq, t.take_equal - eq_before));
  int pos = BlockExclusiveScan(gt + taken_eq);
  int e = eq_before;
  for (int i = lo; i < hi; ++i) {
    const uint32_t key = keys[i];
    bool take = key > t.key;
    if (key == t.key) take = e++ < t.take_equal;
    if (take) {
      out_keys[pos] = key;
      out_ids[pos] = ids != nullptr ? ids[i] : base + i;
      ++pos;
    }
  }
}

// ---- kernels -------------------------------------------------------------------------------

// Block per row: logits[id] = penalized(sanitized(logits[id])) for the row's pairs, the raw
// values to saved[]; flags[row] = 1 when a penalty overflowed to +inf.
__global__ void __launch_bounds__(kPenaltyThreads)
    PenalizeKernel(float* __restrict__ logits, int64_t stride,        // [n_rows, stride]
                   const SummaryRowArgs* __restrict__ rows,           // [n_rows]
                   const int32_t* __restrict__ pair_ids,              // [n_pairs]
                   const int32_t* __restrict__ pair_counts,           // [n_pairs]
                   float* __restrict__ saved,                         // [n_pairs]
                   int32_t* __restrict__ flags) {                     // [n_rows]
  const SummaryRowArgs ra = rows[blockIdx.x];
  float* row = logits + blockIdx.x * stride;
  int overflow = 0;
  if (ra.k > 0) {
    for (int j = threadIdx.x; j < ra.n_pairs; j += blockDim.x) {
      const int p = ra.pair_begin + j;
      const int32_t id = pair_ids[p];
      const float raw = row[id];
      saved[p] = raw;
      const float l = PenalizeLogit(SanitizeLogit(raw), pair_counts[p], ra.repetition_penalty, ra.frequency_penalty,
                                    ra.presence_penalty);
      overflow |= l > FLT_MAX;
      row[id] = l;
    }
  }
  overflow = __syncthreads_or(overflow);
  if (threadIdx.x == 0) flags[blockIdx.x] = overflow;
}

// Block per (chunk, row): the chunk's max, sum of exp((l - max) * inv_t) and k best.
__global__ void __launch_bounds__(kChunkThreads)
    ChunkKernel(const float* __restrict__ logits, int64_t stride, int32_t vocab,  // [n_rows, stride]
                const SummaryRowArgs* __restrict__ rows, int32_t k_max,           // [n_rows]
                float* __restrict__ part_max, double* __restrict__ part_sum,      // [n_rows, n_chunks]
                uint32_t* __restrict__ cand_keys, int32_t* __restrict__ cand_ids) {  // [n_rows, n_chunks, k_max]
  __shared__ uint32_t keys[kChunk];
  const SummaryRowArgs ra = rows[blockIdx.y];
  if (ra.k == 0) return;
  const int begin = static_cast<int>(blockIdx.x) * kChunk;
  const int n = min(kChunk, vocab - begin);
  const float* row = logits + blockIdx.y * stride + begin;
  constexpr int kPer = kChunk / kChunkThreads;
  float v[kPer];
  float m = -INFINITY;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = j * kChunkThreads + static_cast<int>(threadIdx.x);
    v[j] = i < n ? SanitizeLogit(row[i]) : -INFINITY;
    if (i < n) keys[i] = OrderKey(v[j]);
    m = fmaxf(m, v[j]);
  }
  m = BlockMax(m);
  float s = 0.0f;
  if (m > -INFINITY) {
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      if (v[j] > -INFINITY) s += expf((v[j] - m) * ra.inv_t);
    }
  }
  const double sum = BlockSumDouble(s);  // its barriers also publish keys[]
  const size_t slot = static_cast<size_t>(blockIdx.y) * gridDim.x + blockIdx.x;
  if (threadIdx.x == 0) {
    part_max[slot] = m;
    part_sum[slot] = sum;
  }
  const int k = min(ra.k, n);
  uint32_t* ok = cand_keys + slot * k_max;
  int32_t* oi = cand_ids + slot * k_max;
  SelectTopK(keys, nullptr, begin, n, k, ok, oi);
  // A short last chunk: padding below every real key (never selected by the merge).
  for (int i = k + static_cast<int>(threadIdx.x); i < ra.k; i += blockDim.x) {
    ok[i] = 0;
    oi[i] = -1;
  }
}

// Block per row: restores the penalized logits, merges the chunks' max / sums / candidates,
// sorts the k best.
__global__ void __launch_bounds__(kMergeThreads)
    MergeKernel(float* __restrict__ logits, int64_t stride,                    // [n_rows, stride]
                const SummaryRowArgs* __restrict__ rows, int32_t k_max, int n_chunks,  // [n_rows]
                const int32_t* __restrict__ pair_ids, const float* __restrict__ saved,  // [n_pairs]
                const int32_t* __restrict__ flags,                             // [n_rows]
                const float* __restrict__ part_max, const double* __restrict__ part_sum,  // [n_rows, n_chunks]
                const uint32_t* __restrict__ cand_keys, const int32_t* __restrict__ cand_ids,
                SummaryRowOut* __restrict__ out,                               // [n_rows]
                TopLogit* __restrict__ top) {                                  // [n_rows, k_max]
  extern __shared__ uint32_t merge_smem[];  // keys [n_chunks * k], then ids [n_chunks * k]
  __shared__ uint32_t best_keys[kSortSize];
  __shared__ int32_t best_ids[kSortSize];
  __shared__ unsigned long long sorted[kSortSize];
  const int r = blockIdx.x;
  const SummaryRowArgs ra = rows[r];
  if (ra.k == 0) {
    if (threadIdx.x == 0) out[r] = SummaryRowOut{0.0, 0.0f, 0};
    return;
  }
  float* row = logits + r * stride;
  for (int j = threadIdx.x; j < ra.n_pairs; j += blockDim.x) row[pair_ids[ra.pair_begin + j]] = saved[ra.pair_begin + j];

  const float* pm = part_max + static_cast<size_t>(r) * n_chunks;
  const double* ps = part_sum + static_cast<size_t>(r) * n_chunks;
  float m = -INFINITY;
  for (int c = threadIdx.x; c < n_chunks; c += blockDim.x) m = fmaxf(m, pm[c]);
  m = BlockMax(m);
  double z = 0.0;
  for (int c = threadIdx.x; c < n_chunks; c += blockDim.x) {
    if (pm[c] > -INFINITY) z += ps[c] * exp(static_cast<double>((pm[c] - m) * ra.inv_t));
  }
  z = BlockSumDouble(z);

  const int k = ra.k, n = n_chunks * k;
  uint32_t* keys = merge_smem;
  int32_t* ids = reinterpret_cast<int32_t*>(merge_smem + n);
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const size_t at = (static_cast<size_t>(r) * n_chunks + i / k) * k_max + i % k;
    keys[i] = cand_keys[at];
    ids[i] = cand_ids[at];
  }
  __syncthreads();
  SelectTopK(keys, ids, 0, n, k, best_keys, best_ids);
  __syncthreads();
  // Bitonic sort, descending by (key, then lower id first).
  for (int i = threadIdx.x; i < kSortSize; i += blockDim.x) {
    sorted[i] = i < k ? (static_cast<unsigned long long>(best_keys[i]) << 32) | static_cast<uint32_t>(~best_ids[i])
                      : 0ull;
  }
  __syncthreads();
  for (int size = 2; size <= kSortSize; size <<= 1) {
    for (int stride_ = size / 2; stride_ > 0; stride_ >>= 1) {
      for (int i = threadIdx.x; i < kSortSize; i += blockDim.x) {
        const int j = i ^ stride_;
        if (j > i) {
          const bool descending = (i & size) == 0;
          const unsigned long long a = sorted[i], b = sorted[j];
          if ((a < b) == descending) {
            sorted[i] = b;
            sorted[j] = a;
          }
        }
      }
      __syncthreads();
    }
  }
  TopLogit* t = top + static_cast<size_t>(r) * k_max;
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    const unsigned long long e = sorted[i];
    t[i] = TopLogit{static_cast<int32_t>(~static_cast<uint32_t>(e)), KeyValue(static_cast<uint32_t>(e >> 32))};
  }
  if (threadIdx.x == 0) out[r] = SummaryRowOut{z, flags[r] ? INFINITY : m, k};
}

// ---- scratch layout ------------------------------------------------------------------------

int NumChunks(int32_t vocab) { return (vocab + kChunk - 1) / kChunk; }

struct Layout {  // byte offsets into the scratch
  size_t out, top, flags, part_max, part_sum, cand_keys, cand_ids, saved, total;
};

Layout MakeLayout(int32_t n_rows, int32_t vocab, int32_t k_max, int32_t n_pairs) {
  const size_t rows = static_cast<size_t>(n_rows), slots = rows * static_cast<size_t>(NumChunks(vocab));
  const size_t cands = slots * static_cast<size_t>(k_max);
  Layout l{};
  l.out = 0;
  l.top = rows * sizeof(SummaryRowOut);
  size_t at = l.top + rows * static_cast<size_t>(k_max) * sizeof(TopLogit);
  auto take = [&](size_t bytes) {
    at = (at + 255) / 256 * 256;
    const size_t o = at;
    at += bytes;
    return o;
  };
  l.flags = take(rows * sizeof(int32_t));
  l.part_max = take(slots * sizeof(float));
  l.part_sum = take(slots * sizeof(double));
  l.cand_keys = take(cands * sizeof(uint32_t));
  l.cand_ids = take(cands * sizeof(int32_t));
  l.saved = take(static_cast<size_t>(n_pairs) * sizeof(float));
  l.total = at;
  return l;
}

}  // namespace

size_t SummaryOutputBytes(int32_t n_rows, int32_t k_max) {
  return static_cast<size_t>(n_rows) * (sizeof(SummaryRowOut) + static_cast<size_t>(k_max) * sizeof(TopLogit));
}

size_t LogitsSummaryScratchBytes(int32_t n_rows, int32_t vocab, int32_t k_max, int32_t n_pairs) {
  return MakeLayout(n_rows, vocab, k_max, n_pairs).total;
}

Status LaunchLogitsSummary(const LogitsSummaryArgs& a, cudaStream_t stream) {
  constexpr const char* kName = "LogitsSummary";
  SLIM_GPU_REQUIRE(a.logits != nullptr && a.rows != nullptr && a.scratch != nullptr, kName);
  SLIM_GPU_REQUIRE(a.n_rows >= 1 && a.n_rows <= 65535 && a.vocab >= 1 && a.stride >= a.vocab, kName);
  SLIM_GPU_REQUIRE(a.k_max >= 1 && a.k_max <= kMaxSummaryK && a.k_max <= a.vocab, kName);
  SLIM_GPU_REQUIRE(a.n_pairs >= 0 && (a.n_pairs == 0 || (a.pair_ids != nullptr && a.pair_counts != nullptr)), kName);
  const int n_chunks = NumChunks(a.vocab);
  const size_t merge_smem = static_cast<size_t>(n_chunks) * static_cast<size_t>(a.k_max) * 8;
  int max_smem = 0, device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  // The merge kernel's static shared memory (sort buffers, reductions) stays under 8 KiB.
  if (merge_smem + 8192 > static_cast<size_t>(max_smem)) {
    return InvalidArgumentError(std::string(kName) + ": vocabulary too large for k_max " + std::to_string(a.k_max));
  }
  const Layout l = MakeLayout(a.n_rows, a.vocab, a.k_max, a.n_pairs);
  char* base = static_cast<char*>(a.scratch);
  auto* out = reinterpret_cast<SummaryRowOut*>(base + l.out);
  auto* top = reinterpret_cast<TopLogit*>(base + l.top);
  auto* flags = reinterpret_cast<int32_t*>(base + l.flags);
  auto* part_max = reinterpret_cast<float*>(base + l.part_max);
  auto* part_sum = reinterpret_cast<double*>(base + l.part_sum);
  auto* cand_keys = reinterpret_cast<uint32_t*>(base + l.cand_keys);
  auto* cand_ids = reinterpret_cast<int32_t*>(base + l.cand_ids);
  auto* saved = reinterpret_cast<float*>(base + l.saved);

  PenalizeKernel<<<a.n_rows, kPenaltyThreads, 0, stream>>>(a.logits, a.stride, a.rows, a.pair_ids, a.pair_counts,
                                                           saved, flags);
  CUDA_CHECK_LAUNCH("PenalizeKernel");
  ChunkKernel<<<dim3(n_chunks, a.n_rows), kChunkThreads, 0, stream>>>(a.logits, a.stride, a.vocab, a.rows, a.k_max,
                                                                      part_max, part_sum, cand_keys, cand_ids);
  CUDA_CHECK_LAUNCH("ChunkKernel");
  CUDA_CHECK(cudaFuncSetAttribute(MergeKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(merge_smem)));
  MergeKernel<<<a.n_rows, kMergeThreads, merge_smem, stream>>>(a.logits, a.stride, a.rows, a.k_max, n_chunks,
                                                               a.pair_ids, saved, flags, part_max, part_sum,
                                                               cand_keys, cand_ids, out, top);
  CUDA_CHECK_LAUNCH("MergeKernel");
  return OkStatus();
}

}  // namespace slim::cuda
