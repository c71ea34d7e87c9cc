// Kernel: few-row bf16 GEMV on the tensor cores (mma m16n8k16, the <= 8 rows of x padded to the
// mma's n = 8), optionally with SwiGLU fused into the x loads; launcher below. Knows nothing of
// cuBLAS: the backend decides which products come here (gemv.h).
//
// Each CTA owns 32 rows of w; its 8 warps split k, each streaming 16-byte chunks of all 32 rows
// (16 loads of w in flight per lane), then sum their partial tiles in shared memory. A lane's
// 16 bytes of w (8 consecutive k of one row) feed two mma k-steps directly: the sum over k
// does not care in which order k is visited, so each lane's 8 columns play the mma fragment's
// k positions {2t, 2t+1, 2t+8, 2t+9} of two steps, and x is loaded with the same permutation
// (same 16 bytes of x row g). No shuffle reductions, no bf16 -> f32 conversions of w.
#include "engine/backend/cuda/gemv.h"

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"

namespace slim::cuda {
namespace {

constexpr int kWarps = 8;           // k is split across the warps of a CTA
constexpr int kThreads = 32 * kWarps;
constexpr int kTileRows = 32;       // rows of w per CTA: two m16 tiles per warp
constexpr int kStepCols = 32;       // columns per step: 4 lanes x 8 of each row
constexpr int kUnroll = 4;          // steps per batch: 4 x 4 chunks of 16 bytes of w per lane in flight
constexpr int kBatchCols = kStepCols * kUnroll;
constexpr int kRedStride = 36;      // floats per x row of a warp's partial tile in shared memory:
                                    // the fragment stores below hit 32 distinct banks

// Must stay the expression of swiglu.cu: the fused x equals LaunchSwiGlu's output bit for bit.
__device__ __forceinline__ float Silu(float x) { return x / (1.0f + expf(-x)); }

// Weights are read once: no L1 allocation, 256-byte L2 prefetch (a warp reads 256 bytes of each
// row per batch).
__device__ __forceinline__ uint4 LoadStream(const bf16* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ uint4 LoadCached(const bf16* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }

// Two m16n8k16 steps of one 16-row tile: lo/hi hold 8 consecutive k of rows g and g + 8, xb the
// same 8 k of x row g (lane = 4 g + t).
__device__ __forceinline__ void MmaChunk(float* acc, const uint4& lo, const uint4& hi, const uint4& xb) {
  const uint32_t a0[4] = {lo.x, hi.x, lo.y, hi.y};
  MmaBf16(acc, a0, xb.x, xb.y);
  const uint32_t a1[4] = {lo.z, hi.z, lo.w, hi.w};
  MmaBf16(acc, a1, xb.z, xb.w);
}

// 8 columns of the SwiGLU activation from their gate and up halves, rounded to bf16.
__device__ __forceinline__ uint4 SwiGlu8(const uint4& gate, const uint4& up) {
  float gf[8], uf[8], of[8];
  Bf16x8ToF(gate, gf);
  Bf16x8ToF(up, uf);
#pragma unroll
  for (int e = 0; e < 8; ++e) of[e] = Silu(gf[e]) * uf[e];
  return FToBf16x8(of);  // silu(0) * 0 = 0: chunks past k stay zero
}

__device__ __forceinline__ uint4 Shfl(const uint4& v, int src) {
  return make_uint4(__shfl_sync(0xffffffffu, v.x, src), __shfl_sync(0xffffffffu, v.y, src),
                    __shfl_sync(0xffffffffu, v.z, src), __shfl_sync(0xffffffffu, v.w, src));
}

// Where a lane's x chunks come from. The mma's x rows n..7 repeat row n - 1 (their outputs are
// dropped), so every pointer is valid.
struct XSource {
  const bf16* own;  // x (SwiGLU: gate) row min(g, n - 1), column 8 t: the lane's fragment chunks
  // SwiGLU with kRounds > 0: a batch needs n x 16 activation chunks; rather than each lane
  // computing its 4 (8 x 4 silu, mostly for padding rows when n is small), round r computes
  // chunk lane % 16 of row min(2 r + lane / 16, n - 1) once, and lane (g, t) takes its chunk of
  // step u from lane (row % 2) * 16 + 4 u + t of round row / 2, row = min(g, n - 1).
  const bf16* shared[2];
  int src_half, round;
};

// One batch of kUnroll steps from column col0: all loads first, then the math. kEdge: the batch
// crosses k, chunks past it count as zeros.
template <bool kSwiGlu, int kRounds, bool kEdge>
__device__ __forceinline__ void GemvBatch(float (&acc)[2][4], const bf16* const (&wr)[4], const XSource& xs, int k,
                                          int col0, int lane) {
  const int t = lane % 4;
  const uint4 zero = make_uint4(0, 0, 0, 0);
  uint4 a[kUnroll][4], xa[kUnroll];
  if constexpr (kSwiGlu && kRounds > 0) {
    uint4 gate[kRounds], up[kRounds];
    const int c = col0 + 8 * (lane % 16);
    const bool in = !kEdge || c < k;
#pragma unroll
    for (int r = 0; r < kRounds; ++r) {
      gate[r] = in ? LoadCached(xs.shared[r] + col0) : zero;  // shared[r] holds the lane's 8 (lane % 16)
      up[r] = in ? LoadCached(xs.shared[r] + k + col0) : zero;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int col = col0 + u * kStepCols;       // this lane's chunk starts at col + 8 t
      const bool in_u = !kEdge || col + 8 * t < k;  // k % 8 == 0: a chunk is all in or all out
#pragma unroll
      for (int j = 0; j < 4; ++j) a[u][j] = in_u ? LoadStream(wr[j] + col) : zero;
    }
    uint4 act[kRounds];
#pragma unroll
    for (int r = 0; r < kRounds; ++r) act[r] = SwiGlu8(gate[r], up[r]);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int src = xs.src_half + 4 * u + t;
      xa[u] = Shfl(act[0], src);
#pragma unroll
      for (int r = 1; r < kRounds; ++r) {
        const uint4 v = Shfl(act[r], src);
        if (xs.round == r) xa[u] = v;
      }
    }
  } else {
    uint4 up[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int col = col0 + u * kStepCols;
      const bool in = !kEdge || col + 8 * t < k;
      xa[u] = in ? LoadCached(xs.own + col) : zero;
      if constexpr (kSwiGlu) up[u] = in ? LoadCached(xs.own + k + col) : zero;
#pragma unroll
      for (int j = 0; j < 4; ++j) a[u][j] = in ? LoadStream(wr[j] + col) : zero;
    }
    if constexpr (kSwiGlu) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) xa[u] = SwiGlu8(xa[u], up[u]);
    }
  }
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    MmaChunk(acc[0], a[u][0], a[u][1], xa[u]);
    MmaChunk(acc[1], a[u][2], a[u][3], xa[u]);
  }
}

constexpr int MinBlocks(bool swiglu, int rounds) { return swiglu && rounds == 0 ? 1 : 2; }

// out[r, row] for rows [32 blockIdx.x, +32) and r < n. kSwiGlu: x is gate_up [n, 2k]; kRounds:
// XSource (0: each lane computes its own chunks; n <= 2 kRounds otherwise). Two CTAs per SM
// (<= 128 registers) except for SwiGLU with own chunks (n > 4), which needs more registers; one
// costs nothing for the down projection (m = 4096: 128 CTAs for 132 SMs).
template <bool kSwiGlu, int kRounds, typename O>
__global__ void __launch_bounds__(kThreads, MinBlocks(kSwiGlu, kRounds))
    GemvKernel(const bf16* __restrict__ x, int64_t x_stride,  // [n, k] (kSwiGlu: [n, 2k])
               const bf16* __restrict__ w, int64_t w_stride,  // [m, k]
               O* __restrict__ out, int64_t out_stride,       // [n, m]
               int n, int m, int k) {
  __shared__ float part[kWarps][kGemvMaxRows * kRedStride];  // per warp: [x row][w row of the tile]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int row0 = blockIdx.x * kTileRows;

  // Rows g, g + 8, g + 16, g + 24 of the tile; rows past m read row m - 1 and are not stored.
  const bf16* wr[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) wr[j] = w + static_cast<int64_t>(min(row0 + g + 8 * j, m - 1)) * w_stride + t * 8;
  // The first batch of w into L2 while the kernel before this one finishes (PDL), then wait for it.
  {
    const int c0 = warp * kBatchCols;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (c0 + u * kStepCols < k) asm volatile("prefetch.global.L2 [%0];\n" ::"l"(wr[j] + c0 + u * kStepCols));
      }
    }
  }
  PdlWait();
  XSource xs;
  const int xrow = min(g, n - 1);
  xs.own = x + static_cast<int64_t>(xrow) * x_stride + t * 8;
#pragma unroll
  for (int r = 0; r < 2; ++r)
    xs.shared[r] = x + static_cast<int64_t>(min(2 * r + lane / 16, n - 1)) * x_stride + 8 * (lane % 16);
  xs.src_half = (xrow % 2) * 16;
  xs.round = xrow / 2;

  float acc[2][4] = {};
  int col0 = warp * kBatchCols;
  for (; col0 + kBatchCols <= k; col0 += kWarps * kBatchCols)
    GemvBatch<kSwiGlu, kRounds, false>(acc, wr, xs, k, col0, lane);
  if (col0 < k) GemvBatch<kSwiGlu, kRounds, true>(acc, wr, xs, k, col0, lane);

  PdlTrigger();  // late: the next kernel's CTAs take SM slots only as these finish
  // Accumulator fragment of tile i: (row 16 i + g, x rows 2t, 2t + 1), then row + 8.
  float* p = part[warp];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = 16 * i + g;
    p[(2 * t) * kRedStride + r] = acc[i][0];
    p[(2 * t + 1) * kRedStride + r] = acc[i][1];
    p[(2 * t) * kRedStride + r + 8] = acc[i][2];
    p[(2 * t + 1) * kRedStride + r + 8] = acc[i][3];
  }
  __syncthreads();
  // One output per thread: 32 w rows x 8 x rows.
  const int r = threadIdx.x % kTileRows, orow = threadIdx.x / kTileRows;
  if (orow < n && row0 + r < m) {
    float s = 0.0f;
#pragma unroll
    for (int v = 0; v < kWarps; ++v) s += part[v][orow * kRedStride + r];
    out[static_cast<int64_t>(orow) * out_stride + row0 + r] = FromF<O>(s);
  }
}

template <bool kSwiGlu, int kRounds>
Status Launch(const GemvArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((a.m + kTileRows - 1) / kTileRows));
  const auto* x = static_cast<const bf16*>(a.x);
  const auto* w = static_cast<const bf16*>(a.w);
  const int n = static_cast<int>(a.n), m = static_cast<int>(a.m), k = static_cast<int>(a.k);
  if (a.out_dtype == DType::kF32) {
    CUDA_CHECK(LaunchPdl(GemvKernel<kSwiGlu, kRounds, float>, grid, dim3(kThreads), 0, stream, x, a.x_stride, w,
                         a.w_stride, static_cast<float*>(a.out), a.out_stride, n, m, k));
  } else {
    CUDA_CHECK(LaunchPdl(GemvKernel<kSwiGlu, kRounds, bf16>, grid, dim3(kThreads), 0, stream, x, a.x_stride, w,
                         a.w_stride, static_cast<bf16*>(a.out), a.out_stride, n, m, k));
  }
  return OkStatus();
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool GemvSupports(const GemvArgs& a) {
  const int64_t x_cols = a.swiglu ? 2 * a.k : a.k;
  return a.x != nullptr && a.w != nullptr && a.n >= 1 && a.n <= kGemvMaxRows && a.m >= 1 && a.m <= (int64_t{1} << 30) && a.k >= 8 &&
         a.k <= (int64_t{1} << 30) && a.k % 8 == 0 && a.x_stride >= x_cols && a.x_stride % 8 == 0 &&
         a.w_stride >= a.k && a.w_stride % 8 == 0 && a.out_stride >= a.m && Aligned16(a.x) && Aligned16(a.w) &&
         a.out != nullptr && (a.out_dtype == DType::kBF16 || a.out_dtype == DType::kF32);
}

Status LaunchGemv(const GemvArgs& a, cudaStream_t stream) {
  SLIM_GPU_REQUIRE(GemvSupports(a), "LaunchGemv");
  if (!a.swiglu) return Launch<false, 0>(a, stream);
  if (a.n <= 2) return Launch<true, 1>(a, stream);
  if (a.n <= 4) return Launch<true, 2>(a, stream);
  return Launch<true, 0>(a, stream);
}

}  // namespace slim::cuda
