// Kernel: the gate and up projections of a SwiGLU MLP with the activation in the epilogue,
// act[n, ff] = silu(x W_gate^T) * (x W_up^T), for bf16 x [n, d] and W = [W_gate; W_up] [2 ff, d]
// (the stacked gate-up weight), on sm_90a; launcher below.
//
// It replaces a cuBLAS product into gate_up [n, 2 ff] and a SwiGLU pass over it: the 2 ff-wide
// bf16 intermediate is neither written nor read back (at 32K rows of the 8B model, 1.9 GB each
// way per layer), and silu * up is taken from the fp32 accumulators.
//
// Persistent CTAs, one per SM, each taking every gridDim-th tile of 128 rows x 128 output
// columns; three warpgroups (384 threads). Warpgroup 0's first thread streams, per 64-wide step
// of d, the x tile [128 rows][64] and the W tile [256 rows][64] (gate rows c0.., then up rows
// ff + c0..) by TMA into a 4-stage ring (mbarriers `full` / `empty`), running ahead into the
// next tile while the consumers apply the epilogue. Warpgroups 1 and 2 each own 64 rows and
// issue four wgmma m64n256k16 a step into 128 fp32 accumulators, releasing the previous step's
// stage once its wgmmas are done. In a thread's accumulators, gate column c and up column c sit 64
// registers apart, so silu * up is formed in registers and stored as bf16. Tiles are visited in
// groups of 16 row tiles that sweep the columns together, so that a group's x tiles stay in L2
// while W streams past once per group.
//
// On the H200 this persistent schedule is faster than one CTA a tile and than clusters of two
// sharing W by TMA multicast, but the fused MLP and the two steps (cuBLAS product + SwiGLU pass)
// take the same time at the 8B model's prefill shapes (figures in bench/cuda-prefill.md), so
// BackendOptions::cuda_fused_mlp "auto" keeps the two steps and "on" selects this kernel.
#include "engine/backend/cuda/gate_up_swiglu.h"

#include <algorithm>
#include <mutex>
#include <string>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"
#include "engine/backend/cuda/sm90_common.cuh"

namespace slim::cuda {
namespace {

using namespace sm90;

constexpr int kBM = 128, kBN = 128, kBK = 64, kStages = 4, kThreads = 384;
[[maybe_unused]] constexpr int kGroupRows = 16;
[[maybe_unused]] constexpr int kProducerRegs = 40, kConsumerRegs = 232;
constexpr int kABytes = kBM * kBK * 2;          // x tile of a step: 16 KB
constexpr int kBBytes = 2 * kBN * kBK * 2;      // W tile of a step (gate + up rows): 32 KB
constexpr int kStageBytes = kABytes + kBBytes;  // 48 KB
constexpr int kSmemBytes = kStages * kStageBytes + 64 + 1024;  // + barriers + alignment slack

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// d[64 x 256] (+)= A[64 x 16] * B[16 x 256], both from shared memory (K-major, 128-byte swizzle).
__device__ __forceinline__ void Wgmma256(float (&d)[128], uint64_t da, uint64_t db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, %128, %129, p, 1, 1, 0, 0;\n}\n"
      : SLIM_WGMMA_ACC64(d, 0), SLIM_WGMMA_ACC64(d, 64)
      : "l"(da), "l"(db), "r"(accumulate));
}

// One [rows][64] box at (col, row) of `map` into dst, completing on bar.
__device__ __forceinline__ void TmaLoad2d(uint32_t dst, const CUtensorMap* map, int col, int row, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(col), "r"(row), "r"(bar)
      : "memory");
}

__device__ __forceinline__ float Silu(float g) { return __fdividef(g, 1.0f + __expf(-g)); }

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

__global__ void __launch_bounds__(kThreads, 1)
    GateUpSwiGluKernel(const __grid_constant__ CUtensorMap x_map, const __grid_constant__ CUtensorMap w_map,
                       bf16* __restrict__ out, int64_t out_stride, int n_rows, int ff, int d) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // the body exists only in the sm_90a cubin
  extern __shared__ uint8_t smem_raw[];
  const uint32_t smem = (SmemAddr(smem_raw) + 1023u) & ~1023u;
  const uint32_t bars = smem + kStages * kStageBytes;  // full[kStages], empty[kStages]
  auto full = [&](int st) { return bars + 8 * st; };
  auto empty = [&](int st) { return bars + 8 * (kStages + st); };
  auto stage_a = [&](int st) { return smem + st * kStageBytes; };
  auto stage_b = [&](int st) { return smem + st * kStageBytes + kABytes; };

  const int m_tiles = (n_rows + kBM - 1) / kBM, n_tiles = ff / kBN, n_total = m_tiles * n_tiles;
  const int k_steps = d / kBK;
  // Pair p's first row and first output column: groups of kGroupPairs row pairs, the row pair
  // varying fastest within a group.
  auto tile_of = [&](int p, int& m0, int& c0) {
    const int per_group = kGroupRows * n_tiles;
    const int group = p / per_group, within = p % per_group;
    const int group_rows = min(kGroupRows, m_tiles - group * kGroupRows);
    m0 = (group * kGroupRows + within % group_rows) * kBM;
    c0 = (within / group_rows) * kBN;
  };
  const int tid = threadIdx.x, wg = tid / 128;

  if (tid == 0) {
    for (int st = 0; st < kStages; ++st) {
      MbarInit(full(st), 1);
      MbarInit(empty(st), 2);  // the two consumer warpgroups
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {
    SetMaxNReg<kProducerRegs, false>();
    if (tid == 0) {
      int it = 0;  // steps issued by this CTA, over all its tiles
      for (int p = blockIdx.x; p < n_total; p += gridDim.x) {
        int m0, c0;
        tile_of(p, m0, c0);
        for (int j = 0; j < k_steps; ++j, ++it) {
          const int st = it % kStages;
          if (it >= kStages) MbarWait(empty(st), ((it / kStages) - 1) & 1);
          MbarExpectTx(full(st), kStageBytes);
          TmaLoad2d(stage_a(st), &x_map, j * kBK, m0, full(st));
          TmaLoad2d(stage_b(st), &w_map, j * kBK, c0, full(st));
          TmaLoad2d(stage_b(st) + kBBytes / 2, &w_map, j * kBK, ff + c0, full(st));
        }
      }
    }
  } else {
    SetMaxNReg<kConsumerRegs, true>();
    const int c = wg - 1, lane = tid % 32, wq = (tid / 32) % 4;
    auto release = [&](int st) {  // this warpgroup is done with stage st
      if (tid % 128 == 0) MbarArrive(empty(st));
    };
    float acc[128];
    int it = 0;
    for (int p = blockIdx.x; p < n_total; p += gridDim.x) {
      int m0, c0;
      tile_of(p, m0, c0);
      for (int j = 0; j < k_steps; ++j, ++it) {
        const int st = it % kStages;
        MbarWait(full(st), (it / kStages) & 1);
        const uint64_t ad = Desc(stage_a(st) + c * 64 * 128, 16, 1024), bd = Desc(stage_b(st), 16, 1024);
        WgmmaFence();
#pragma unroll
        for (int kk = 0; kk < kBK / 16; ++kk) {
          Wgmma256(acc, DescPlus(ad, kk * 32), DescPlus(bd, kk * 32), j > 0 || kk > 0);
        }
        WgmmaCommit();
        WgmmaWait<1>();  // step j - 1's wgmmas are done: its stage goes back to the producers
        if (j > 0) release((it - 1) % kStages);
      }
      WgmmaWait<0>();
      release((it - 1) % kStages);

      // acc[4t + e]: row 16 wq + lane / 4 (+ 8 for e >= 2), column 8 t + 2 (lane % 4) + (e & 1);
      // gate columns are t < 16, the matching up columns t + 16 (64 registers on).
      const int row_a = m0 + c * 64 + wq * 16 + lane / 4, row_b = row_a + 8;
#pragma unroll
      for (int t = 0; t < 16; ++t) {
        const int col = c0 + 8 * t + 2 * (lane % 4);
        const float* g = acc + 4 * t;
        const float* u = acc + 64 + 4 * t;
        if (row_a < n_rows) {
          *reinterpret_cast<uint32_t*>(out + static_cast<int64_t>(row_a) * out_stride + col) =
              PackBf16x2(Silu(g[0]) * u[0], Silu(g[1]) * u[1]);
        }
        if (row_b < n_rows) {
          *reinterpret_cast<uint32_t*>(out + static_cast<int64_t>(row_b) * out_stride + col) =
              PackBf16x2(Silu(g[2]) * u[2], Silu(g[3]) * u[3]);
        }
      }
    }
  }
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}

bool EncodeMap(CUtensorMap* map, const void* base, int64_t rows, int64_t cols, int64_t stride_elems, int box_rows) {
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(stride_elems) * 2};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(kBK), static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  return EncodeTiled()(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(base), dims, strides, box,
                       elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                       CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace

bool GateUpSwiGluSm90Available() {
  static const bool ok = Sm90aKernelRuns(GateUpSwiGluKernel);
  return ok;
}

bool GateUpSwiGluSupports(const GateUpSwiGluArgs& a) {
  const auto aligned16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return a.n_rows > 0 && a.n_rows < (int64_t{1} << 31) / 2 && a.ff > 0 && a.ff % kBN == 0 && a.d > 0 &&
         a.d % kBK == 0 && a.x_stride >= a.d && a.x_stride % 8 == 0 && a.w_stride >= a.d && a.w_stride % 8 == 0 &&
         a.out_stride >= a.ff && a.out_stride % 2 == 0 && aligned16(a.x) && aligned16(a.w) &&
         reinterpret_cast<uintptr_t>(a.out) % 4 == 0;
}

Status LaunchGateUpSwiGlu(const GateUpSwiGluArgs& a, cudaStream_t stream) {
  const char* name = "LaunchGateUpSwiGlu";
  SLIM_GPU_REQUIRE(GateUpSwiGluSm90Available() && GateUpSwiGluSupports(a), name);
  static std::once_flag configured;
  cudaError_t attr = cudaSuccess;
  std::call_once(configured, [&] {
    attr = cudaFuncSetAttribute(GateUpSwiGluKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  });
  CUDA_CHECK(attr);
  CUtensorMap x_map, w_map;
  if (!EncodeMap(&x_map, a.x, a.n_rows, a.d, a.x_stride, kBM) ||
      !EncodeMap(&w_map, a.w, 2 * a.ff, a.d, a.w_stride, kBN)) {
    return InternalError(std::string(name) + ": cuTensorMapEncodeTiled failed");
  }
  // Persistent: one CTA per SM (at most one a tile), each taking every gridDim-th tile.
  static const int n_sms = [] {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return n;
  }();
  SLIM_GPU_REQUIRE(n_sms >= 1, name);
  const int64_t tiles = ((a.n_rows + kBM - 1) / kBM) * (a.ff / kBN);
  SLIM_GPU_REQUIRE(tiles < (int64_t{1} << 31), name);
  const int ctas = static_cast<int>(std::min<int64_t>(tiles, n_sms));
  GateUpSwiGluKernel<<<ctas, kThreads, kSmemBytes, stream>>>(
      x_map, w_map, static_cast<bf16*>(a.out), a.out_stride, static_cast<int>(a.n_rows), static_cast<int>(a.ff),
      static_cast<int>(a.d));
  CUDA_CHECK_LAUNCH("GateUpSwiGluKernel");
  return OkStatus();
}

}  // namespace slim::cuda
