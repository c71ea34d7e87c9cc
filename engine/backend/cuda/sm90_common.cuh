// sm_90a building blocks shared by the warp-specialized kernels (flash_attention_sm90.cu,
// gate_up_swiglu_sm90.cu): wgmma descriptors and fences, register budgets (setmaxnreg),
// mbarriers, and the driver's cuTensorMapEncodeTiled. Included by .cu files only.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

// Inline-PTX operand lists of wgmma accumulators: d[i .. i + 7], d[i .. i + 63] as "+f" operands.
#define SLIM_WGMMA_ACC8(d, i)                                                                                 \
  "+f"(d[(i)]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3]), "+f"(d[(i) + 4]), "+f"(d[(i) + 5]), \
      "+f"(d[(i) + 6]), "+f"(d[(i) + 7])
#define SLIM_WGMMA_ACC64(d, i)                                                                                  \
  SLIM_WGMMA_ACC8(d, (i)), SLIM_WGMMA_ACC8(d, (i) + 8), SLIM_WGMMA_ACC8(d, (i) + 16), SLIM_WGMMA_ACC8(d, (i) + 24), \
      SLIM_WGMMA_ACC8(d, (i) + 32), SLIM_WGMMA_ACC8(d, (i) + 40), SLIM_WGMMA_ACC8(d, (i) + 48),                 \
      SLIM_WGMMA_ACC8(d, (i) + 56)

namespace slim::cuda::sm90 {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// Shared-memory matrix descriptor: 128-byte swizzle, offsets in 16-byte units. Shared-memory
// addresses are below 2^18, so the start-address field (bits 0-13) is addr >> 4 as it stands.
__device__ __forceinline__ uint64_t Desc(uint32_t addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  const uint32_t lo = (addr >> 4) | ((lbo_bytes >> 4) << 16);
  const uint32_t hi = (sbo_bytes >> 4) | (1u << 30);
  return (uint64_t{hi} << 32) | lo;
}

// The descriptor of the same layout `off_bytes` (16-byte aligned) further on: an add to the
// start-address field, which cannot carry out of it (the address stays below 2^18). Saves the
// wgmma loops rebuilding each descriptor from its address: six uniform ops a wgmma became one to
// three (the attention kernel's loop 693 -> 621 instructions).
__device__ __forceinline__ uint64_t DescPlus(uint64_t d, uint32_t off_bytes) { return d + (off_bytes >> 4); }

__device__ __forceinline__ void WgmmaFence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void WgmmaCommit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void WgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Moves this warpgroup's register budget to N (all its warps execute it).
template <int N, bool kInc>
__device__ __forceinline__ void SetMaxNReg() {
  if constexpr (kInc) {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
  } else {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
  }
}
__device__ __forceinline__ void FenceProxyAsync() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

__device__ __forceinline__ void MbarInit(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void MbarArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void MbarExpectTx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void MbarWait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// cuTensorMapEncodeTiled from the driver the runtime loaded (no link against libcuda).
inline EncodeTiledFn EncodeTiled() {
  static EncodeTiledFn fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      f = nullptr;
    }
    return reinterpret_cast<EncodeTiledFn>(f);
  }();
  return fn;
}

// True on an sm_90 device whose loaded image of `kernel` is the sm_90a cubin (another device would
// run the PTX fallback, whose body is empty) when the driver also has the tensor-map encoder.
template <typename Kernel>
bool Sm90aKernelRuns(Kernel* kernel) {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) return false;
  cudaFuncAttributes attr{};
  if (cudaFuncGetAttributes(&attr, kernel) != cudaSuccess) return false;
  return major == 9 && minor == 0 && attr.binaryVersion == 90 && EncodeTiled() != nullptr;
}

}  // namespace slim::cuda::sm90
