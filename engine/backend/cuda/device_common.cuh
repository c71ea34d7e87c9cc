// Device helpers shared by the CUDA kernels: bf16/f32 loads and stores by dtype, warp and block
// reductions, and the inline-PTX wrappers (cp.async, ldmatrix, mma) of the attention kernels.
// Included by .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <utility>

namespace slim::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float ToF(float x) { return x; }
__device__ __forceinline__ float ToF(bf16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T FromF(float x);
template <>
__device__ __forceinline__ float FromF<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 FromF<bf16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
__device__ __forceinline__ float BlockSum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  v = WarpSum(v);
  __syncthreads();  // partial[] may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float t = lane < n_warps ? partial[lane] : 0.0f;
  return WarpSum(t);
}

// Maximum over the block, as BlockSum.
__device__ __forceinline__ float BlockMax(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float t = lane < n_warps ? partial[lane] : -INFINITY;
  return WarpMax(t);
}

// 8 bf16 (16 bytes) <-> 8 floats.
__device__ __forceinline__ void Bf16x8ToF(const uint4& u, float* f) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __bfloat1622float2(h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

__device__ __forceinline__ uint4 FToBf16x8(const float* f) {
  uint4 u;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return u;
}

__device__ __forceinline__ uint32_t PackBf16x2(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

// RoPE: cos / sin of pos * inv_freq[i] for i < half into cs / sn (block-strided; the caller
// syncs). The angle is formed and reduced in double, as the CPU reference does, so positions
// near 128K keep their precision.
__device__ __forceinline__ void RopeAngles(double pos, const float* inv_freq, int half, float* cs, float* sn) {
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    double s, c;
    sincos(pos * static_cast<double>(inv_freq[i]), &s, &c);
    cs[i] = static_cast<float>(c);
    sn[i] = static_cast<float>(s);
  }
}

// ---- asynchronous copies and tensor-core fragments (sm_80+) ----------------------------------

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; src_bytes == 0 zero-fills the destination.
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SmemAddr(smem)), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void CpAsyncWaitAll() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ void LdMatrixX4(uint32_t* r, const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(smem)));
}
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t* r, const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(smem)));
}

// d[16x8 f32] += a[16x16 bf16, row] * b[16x8 bf16, col]
__device__ __forceinline__ void MmaBf16(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Epilogue of the flash kernels: the accumulators of a 16-row MMA tile, NT n-tiles of 8 columns
// (o[4 t .. 4 t + 3]: row lane/4 columns 2 (lane%4) and +1, then row lane/4 + 8), plus the two
// rows' softmax sums l (per thread, reduced over the 4 lanes of a row here), normalized and
// stored as bf16 into out + row * stride; rows >= `rows` are not stored.
template <int NT>
__device__ __forceinline__ void StoreRowPair(const float* o, float (&l)[2], int lane, int first_row, int rows,
                                             bf16* out, int64_t stride) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  const float inv_a = 1.0f / l[0], inv_b = 1.0f / l[1];
  const int row_a = first_row + lane / 4, row_b = row_a + 8;
#pragma unroll
  for (int d = 0; d < NT; ++d) {
    const int col = d * 8 + (lane % 4) * 2;
    if (row_a < rows)
      *reinterpret_cast<uint32_t*>(out + static_cast<int64_t>(row_a) * stride + col) =
          PackBf16x2(o[4 * d] * inv_a, o[4 * d + 1] * inv_a);
    if (row_b < rows)
      *reinterpret_cast<uint32_t*>(out + static_cast<int64_t>(row_b) * stride + col) =
          PackBf16x2(o[4 * d + 2] * inv_b, o[4 * d + 3] * inv_b);
  }
}

// ---- programmatic dependent launch (sm_90) -------------------------------------------------------
// A kernel launched by LaunchPdl may start while the kernel before it in the stream still runs
// (hiding the launch gap of decode's chain of short kernels). It must call PdlWait() before it
// reads anything an earlier kernel of the stream wrote and before it writes anything at all;
// PdlTrigger() lets the next PDL kernel launch early. Reads of data no kernel writes (weights)
// may come before the wait.
__device__ __forceinline__ void PdlWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void PdlTrigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Whether LaunchPdl allows programmatic stream serialization (BackendOptions::cuda_pdl; one
// setting for the process). Off, its kernels launch in plain stream order and their PdlWait /
// PdlTrigger are no-ops.
inline std::atomic<bool> g_pdl_launch{true};

// kernel<<<grid, block, smem, stream>>>(args...) with programmatic stream serialization allowed.
template <typename... KArgs, typename... Args>
cudaError_t LaunchPdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                      Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = g_pdl_launch.load(std::memory_order_relaxed) ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace slim::cuda
