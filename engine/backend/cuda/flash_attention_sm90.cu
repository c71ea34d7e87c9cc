// Kernel: FA3-style causal prefill attention for head size 128 on sm_90a, launcher below.
//
// CTA: three warpgroups (384 threads), 128 query rows of one head. Warpgroup 0 is the producer:
// after the prologue it drops to 24 registers (setmaxnreg) and one thread streams K/V by TMA into a
// 3-stage ring (mbarriers: `full` counts the bytes in, `empty` takes one arrival per consumer done
// with a stage). Warpgroups 1 and 2 are the consumers (240 registers each); consumer c owns rows
// [64c, 64c + 64). Per step j of 128 keys (two 64-token KV blocks):
//   S(j) = Q K(j)^T    wgmma m64n128k16, Q from registers (A fragments, loaded once from global
//                       memory), K from shared memory (K-major, 128-byte swizzle),
//   online softmax of S(j) in registers (log2 domain, causal mask on the diagonal) into P(j),
//   O += P(j) V(j)      wgmma m64n128k16 with P (bf16) from registers and V from shared memory
//                       (MN-major, transposed by the instruction).
// Each consumer issues S(j) and P(j-1) V(j-1) in one turn, and the two consumers take turns
// issuing (named barriers 1 and 2, "ping-pong"), so one consumer's softmax runs while the other's
// GEMMs have the tensor cores. The rescale of O by step j-1's factors sits between the two
// issues, under S(j) (and a warp whose 16 rows all kept their running max skips it). ptxas places the wait for a consumer's own P V(j-1) before its
// softmax of S(j) (the softmax rewrites S's accumulator registers in place); a variant that
// wrote P to separate registers and so overlapped the two measured slower (the consumers'
// softmaxes then ran at the same time), as did row sums on the tensor cores. Q in registers instead
// of shared memory, the rescale under S and a tree for the row maxima measured slightly faster
// together; a double-buffered P that moves the wait for P V(j-1) into the next turn makes ptxas
// serialize the wgmmas (warning C7514) and was not kept (bench/cuda-prefill.md has the figures).
//
// The TMA map views the KV arena as [slices][64 tokens][head_dim] bf16, a slice being one head's
// K or V of one block (paged_kv.h): box [64 tokens][64 dims] = one 128-byte-swizzled atom. Slots
// past a sequence's end are loaded too (the arena is zero-filled at allocation, so they hold
// finite values) and masked; a missing second block of a step reloads the first.
//
// Shared memory (1024-byte aligned): K and V [3 stages][2 atoms][128][64];
// an atom is a 64-column (128-byte) slice, row r's 16-byte chunk c stored at chunk c ^ (r & 7).
#include <cuda.h>

#include <cmath>
#include <mutex>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"
#include "engine/backend/cuda/flash_attention.h"
#include "engine/backend/cuda/sm90_common.cuh"

namespace slim::cuda {
namespace {

using namespace sm90;

[[maybe_unused]] constexpr int kHD = 128, kBN = 128;
constexpr int kBM = kFlashRows, kThreads = 384, kStages = 3;
// Register budgets after the split (x 128 threads each: 24 + 2 x 240 fits the 64K-register file).
[[maybe_unused]] constexpr int kProducerRegs = 24, kConsumerRegs = 240;
constexpr int kAtomBytes = 128 * 128;                   // one 64-column slice of a 128-row tile
constexpr int kTileBytes = 2 * kAtomBytes;              // a 128 x 128 bf16 tile
[[maybe_unused]] constexpr int kStepBytes = 2 * kTileBytes;  // K and V of one step
constexpr int kBarrierBytes = 64;
constexpr int kSmemBytes = 2 * kStages * kTileBytes + kBarrierBytes + 1024;  // + alignment slack
static_assert(kBM == 128, "two consumer warpgroups of 64 rows");

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// Re-defines the registers after a wait, so that no read of them is scheduled before it.
__device__ __forceinline__ void FenceRegs(float (&d)[64]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
__device__ __forceinline__ void FenceRegs(uint32_t (&a)[8][4]) {
#pragma unroll
  for (int i = 0; i < 32; ++i) asm volatile("" : "+r"(a[i / 4][i % 4])::"memory");
}

// 2^x, one MUFU op (flushes denormal results to zero; probabilities that small do not matter).
__device__ __forceinline__ float Ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Named barriers among the 256 consumer threads (id 0 is __syncthreads).
__device__ __forceinline__ void BarSync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void BarArrive(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }

// One [64 tokens][64 dims] atom of slice `slice`, dims [64 a, 64 a + 64), into `dst`.
__device__ __forceinline__ void TmaLoad(uint32_t dst, const CUtensorMap* map, int a, int64_t slice, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::
          "r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(64 * a), "r"(0), "r"(static_cast<int32_t>(slice)), "r"(bar)
      : "memory");
}

// d[64 x 128] += A[64 x 16] (registers) * B[16 x 128] (smem, MN-major: transposed on the fly)
__device__ __forceinline__ void WgmmaRS(float (&d)[64], const uint32_t (&a)[4], uint64_t db) {
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, 1, 1, 1, 1;\n"
      : SLIM_WGMMA_ACC64(d, 0)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}

// d[64 x 128] (+)= A[64 x 16] (registers) * B[16 x 128] (smem, K-major)
__device__ __forceinline__ void WgmmaRSK(float (&d)[64], const uint32_t (&a)[4], uint64_t db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
      : SLIM_WGMMA_ACC64(d, 0)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate));
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

__global__ void __launch_bounds__(kThreads, 1)
    FlashSm90Kernel(const __grid_constant__ CUtensorMap kv_map, const FlashParams p, float scale_log2) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // the body exists only in the sm_90a cubin
  extern __shared__ uint8_t smem_raw[];
  const uint32_t smem = (SmemAddr(smem_raw) + 1023u) & ~1023u;
  const uint32_t sK = smem, sV = sK + kStages * kTileBytes;
  const uint32_t bars = sV + kStages * kTileBytes;  // full[kStages], empty[kStages]
  auto full = [&](int st) { return bars + 8 * st; };
  auto empty = [&](int st) { return bars + 8 * (kStages + st); };

  const int tid = threadIdx.x, lane = tid % 32, wg = tid / 128, wq = (tid / 32) % 4;
  const FlashTile tile = p.tiles[blockIdx.x];
  const PagedSeq s = p.kv.seqs[tile.seq];
  const int h = blockIdx.y, g = h / (p.n_heads / p.kv.n_kv_heads);
  const int r0 = tile.row0;
  const int rows = min(kBM, s.n_rows - r0);
  const int n_total = s.n_past + s.n_rows;
  const int n_kt = (s.n_past + r0 + rows - 1) / kBN + 1;  // key steps holding visible keys

  // Thread 0 (the producer) streams step j's two blocks (K and V, two atoms each) into stage
  // j % kStages once both consumers have released it; the first stages go out before Q loads.
  auto issue = [&](int j) {
    const int st = j % kStages;
    if (j >= kStages) MbarWait(empty(st), ((j / kStages) - 1) & 1);
    MbarExpectTx(full(st), kStepBytes);
    const int32_t* table = p.kv.tables + s.table_offset;
    const int64_t b0 = table[2 * j];
    const int64_t b1 = j * kBN + 64 < n_total ? table[2 * j + 1] : b0;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t slice = (half == 0 ? b0 : b1) * (2 * p.kv.n_kv_heads) + g;
#pragma unroll
      for (int a = 0; a < 2; ++a) {
        const uint32_t off = a * kAtomBytes + half * (kAtomBytes / 2);
        TmaLoad(sK + st * kTileBytes + off, &kv_map, a, slice, full(st));
        TmaLoad(sV + st * kTileBytes + off, &kv_map, a, slice + p.kv.n_kv_heads, full(st));
      }
    }
  };
  if (tid == 0) {
    for (int st = 0; st < kStages; ++st) {
      MbarInit(full(st), 1);
      MbarInit(empty(st), 2);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    for (int j = 0; j < min(kStages, n_kt); ++j) issue(j);
  }
  __syncthreads();  // barriers initialized. No block-wide barrier after this point.

  if (wg == 0) {
    SetMaxNReg<kProducerRegs, false>();
    if (tid == 0) {
      for (int j = kStages; j < n_kt; ++j) issue(j);
    }
    return;
  }
  SetMaxNReg<kConsumerRegs, true>();

  // Consumers: warpgroup c = wg - 1 owns rows [64 c, 64 c + 64) of the tile.
  const int c = wg - 1;
  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int wr = c * 64 + wq * 16;                    // this warp's first row in the tile
  const int lim_a = s.n_past + r0 + wr + lane / 4;    // last visible key of this thread's first row
  const int my_turn = 1 + c, their_turn = 2 - c;
  if (c == 1) BarArrive(1);                           // consumer 0 takes the first turn

  // This warpgroup's Q as wgmma A fragments in registers (qa[kk]: columns [16 kk, 16 kk + 16) of
  // this thread's rows wr + lane / 4 and + 8; rows past the tile's end repeat its last row, never
  // stored), so S reads only K from shared memory.
  uint32_t qa[8][4];
  {
    const bf16* q = static_cast<const bf16*>(p.q) + static_cast<int64_t>(s.row_begin + r0) * p.q_stride + h * kHD;
    const uint32_t* qg = reinterpret_cast<const uint32_t*>(q);
    const int ra = min(wr + lane / 4, rows - 1), rb = min(wr + lane / 4 + 8, rows - 1);
    const int64_t oa = static_cast<int64_t>(ra) * p.q_stride / 2, ob = static_cast<int64_t>(rb) * p.q_stride / 2;
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) {
      const int cw = kk * 8 + lane % 4;  // 32-bit word of columns 16 kk + 2 (lane % 4)
      qa[kk][0] = __ldg(qg + oa + cw);
      qa[kk][1] = __ldg(qg + ob + cw);
      qa[kk][2] = __ldg(qg + oa + cw + 4);
      qa[kk][3] = __ldg(qg + ob + cw + 4);
    }
  }
  // S = Q K^T of step j into sc (issued, not waited for).
  auto issue_s = [&](float (&sc)[64], int j) {
    const uint32_t ks = sK + (j % kStages) * kTileBytes;
    const uint64_t kd = Desc(ks, 16, 1024);
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) {
      const uint32_t off = (kk / 4) * kAtomBytes + (kk % 4) * 32;
      WgmmaRSK(sc, qa[kk], DescPlus(kd, off), kk > 0);
    }
    WgmmaCommit();
  };
  // O += P V of step j (P as bf16 A fragments: the S accumulators of key columns [16 kc, 16 kc + 16)).
  auto issue_pv = [&](const uint32_t (&pa)[8][4], int j) {
    const uint32_t vs = sV + (j % kStages) * kTileBytes;
    const uint64_t vd = Desc(vs, kAtomBytes, 1024);
#pragma unroll
    for (int kc = 0; kc < 8; ++kc) WgmmaRS(o, pa[kc], DescPlus(vd, kc * 16 * 128));
    WgmmaCommit();
  };
  // Online softmax of step j's scores in place (sc becomes P); returns the O rescale factors.
  auto softmax = [&](float (&sc)[64], int j, float (&alpha)[2]) {
    // Mask keys past each row's position; m is kept in the scaled log2 domain, so each
    // probability is one FFMA and one EX2.
    if (j * kBN + kBN - 1 > s.n_past + r0 + wr) {
#pragma unroll
      for (int i = 0; i < 64; ++i) {
        const int key = j * kBN + (i / 4) * 8 + (lane % 4) * 2 + (i & 1);
        if (key > lim_a + ((i & 2) ? 8 : 0)) sc[i] = -INFINITY;
      }
    }
    float mx[2] = {-INFINITY, -INFINITY};
    {  // a tree (depth 5) instead of a chain of 32 dependent maxima per row
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float t[16];
#pragma unroll
        for (int k = 0; k < 16; ++k) t[k] = fmaxf(sc[4 * k + 2 * r], sc[4 * k + 2 * r + 1]);
#pragma unroll
        for (int k = 0; k < 8; ++k) t[k] = fmaxf(t[k], t[k + 8]);
#pragma unroll
        for (int k = 0; k < 4; ++k) t[k] = fmaxf(t[k], t[k + 4]);
        mx[r] = fmaxf(fmaxf(fmaxf(t[0], t[2]), fmaxf(t[1], t[3])), fmaxf(fmaxf(t[4], t[6]), fmaxf(t[5], t[7])));
      }
    }
    float msub[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m[r], mx[r] * scale_log2);
      msub[r] = m_new == -INFINITY ? 0.0f : m_new;
      alpha[r] = Ex2(m[r] - msub[r]);
      m[r] = m_new;
    }
    float rs[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};  // two partial sums a row
#pragma unroll
    for (int i = 0; i < 64; ++i) {
      const int r = (i >> 1) & 1;
      const float pe = Ex2(fmaf(sc[i], scale_log2, -msub[r]));
      sc[i] = pe;
      rs[r][(i >> 2) & 1] += pe;
    }
    l[0] = l[0] * alpha[0] + (rs[0][0] + rs[0][1]);
    l[1] = l[1] * alpha[1] + (rs[1][0] + rs[1][1]);
  };
  auto pack = [&](const float (&sc)[64], uint32_t (&pa)[8][4]) {
#pragma unroll
    for (int kc = 0; kc < 8; ++kc) {
      const float* a = sc + 8 * kc;
      pa[kc][0] = PackBf16x2(a[0], a[1]);
      pa[kc][1] = PackBf16x2(a[2], a[3]);
      pa[kc][2] = PackBf16x2(a[4], a[5]);
      pa[kc][3] = PackBf16x2(a[6], a[7]);
    }
  };
  auto release = [&](int j) {
    if (tid % 128 == 0) MbarArrive(empty(j % kStages));  // this warpgroup is done with step j's stage
  };

  // O *= alpha (the rescale after a new running max); a warp whose rows all kept their max skips it.
  auto rescale = [&](const float (&alpha)[2]) {
    if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
      for (int i = 0; i < 64; ++i) o[i] *= alpha[(i >> 1) & 1];
    }
  };

  // Step 0: S only. Then each turn issues S(j) and P V(j - 1) together; the softmax of S(j) runs
  // while the other warpgroup's turn has the tensor cores.
  float sc[64], alpha[2];
  uint32_t pa[8][4];
  MbarWait(full(0), 0);
  BarSync(my_turn);
  WgmmaFence();
  issue_s(sc, 0);
  BarArrive(their_turn);
  WgmmaWait<0>();
  FenceRegs(sc);
  softmax(sc, 0, alpha);
  pack(sc, pa);
  // The rescale of O by step j-1's factors runs while S(j) has the tensor cores.
  for (int j = 1; j < n_kt; ++j) {
    MbarWait(full(j % kStages), (j / kStages) & 1);
    BarSync(my_turn);
    WgmmaFence();
    issue_s(sc, j);
    rescale(alpha);
    WgmmaFence();
    issue_pv(pa, j - 1);
    BarArrive(their_turn);
    WgmmaWait<1>();  // S(j) done; P V(j - 1) may still run
    FenceRegs(sc);
    softmax(sc, j, alpha);
    WgmmaWait<0>();
    FenceRegs(o);
    FenceRegs(pa);
    release(j - 1);
    pack(sc, pa);
  }
  BarSync(my_turn);
  WgmmaFence();
  rescale(alpha);
  WgmmaFence();
  issue_pv(pa, n_kt - 1);
  BarArrive(their_turn);
  WgmmaWait<0>();
  FenceRegs(o);
  FenceRegs(pa);
  release(n_kt - 1);
  if (c == 0) BarSync(1);  // consumer 1's last hand-over

  // Normalize and store this thread's two rows.
  bf16* out = static_cast<bf16*>(p.out) + static_cast<int64_t>(s.row_begin + r0) * p.out_stride + h * kHD;
  StoreRowPair<16>(o, l, lane, wr, rows, out, p.out_stride);
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}

}  // namespace

bool FlashSm90Available() {
  static const bool ok = Sm90aKernelRuns(FlashSm90Kernel);
  return ok;
}

Status LaunchFlashSm90(const FlashParams& p, cudaStream_t stream) {
  const char* name = "LaunchFlashSm90";
  SLIM_GPU_REQUIRE(p.kv.head_dim == kHD && p.kv.block_tokens == 64 && p.kv.n_blocks > 0, name);
  SLIM_GPU_REQUIRE(p.kv.block_bytes == 2 * p.kv.n_kv_heads * p.kv.head_bytes, name);
  static std::once_flag configured;  // the attribute is per function, set once per process
  cudaError_t attr = cudaSuccess;
  std::call_once(configured, [&] {
    attr = cudaFuncSetAttribute(FlashSm90Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  });
  CUDA_CHECK(attr);

  // The arena as [slices][64 tokens][128 dims] bf16; box = one [64][64] atom, 128-byte swizzle.
  CUtensorMap map;
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(kHD), 64,
                              static_cast<cuuint64_t>(p.kv.n_blocks * 2 * p.kv.n_kv_heads)};
  const cuuint64_t strides[2] = {kHD * 2, static_cast<cuuint64_t>(p.kv.head_bytes)};
  const cuuint32_t box[3] = {64, 64, 1};
  const cuuint32_t elem_strides[3] = {1, 1, 1};
  const CUresult r = EncodeTiled()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, p.kv.arena, dims, strides, box,
                                   elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                   CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) return InternalError("LaunchFlashSm90: cuTensorMapEncodeTiled failed with " + std::to_string(r));

  const dim3 grid(p.n_tiles, p.n_heads);
  FlashSm90Kernel<<<grid, kThreads, kSmemBytes, stream>>>(map, p, p.scale * 1.4426950408889634f);
  CUDA_CHECK_LAUNCH("FlashSm90Kernel");
  return OkStatus();
}

}  // namespace slim::cuda
