// Kernels: RMSNorm (one block per row; a register-resident variant for rows of <= 8192 aligned
// columns), residual add (grid-stride), fused add + RMSNorm;
// launchers with dtype dispatch below.
#include "engine/backend/cuda/rms_norm.h"

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_common.cuh"

namespace slim::cuda {
namespace {

// With `x` set, acc += x first (and the sum is what gets normalized and stored back).
template <typename A, typename X, typename O>
__global__ void AddRmsNormKernel(A* __restrict__ acc, int64_t acc_stride, const X* __restrict__ x, int64_t x_stride,
                                 const float* __restrict__ w, float eps, O* __restrict__ out, int64_t out_stride,
                                 int64_t cols) {
  A* a = acc + blockIdx.x * acc_stride;
  const X* xr = x != nullptr ? x + blockIdx.x * x_stride : nullptr;
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = ToF(a[c]);
    if (xr != nullptr) {
      v += ToF(xr[c]);
      a[c] = FromF<A>(v);
      v = ToF(a[c]);  // normalize what is stored, as separate Add + RmsNorm would
    }
    ss += v * v;
  }
  ss = BlockSum(ss);
  const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(ss) / static_cast<double>(cols) + eps));
  O* o = out + blockIdx.x * out_stride;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = FromF<O>(ToF(a[c]) * scale * w[c]);
}

// Rows of at most 8 * kVecThreads columns, 8 a thread held in registers: one read of acc, x and w
// and one write of acc and out per element (the generic kernel above reads acc three times),
// which is what decode's single rows are bound by (latency, not bandwidth). Same arithmetic.
constexpr int kVecThreads = 1024;

__device__ __forceinline__ void Load8(const float* p, float* v) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void Load8(const bf16* p, float* v) { Bf16x8ToF(*reinterpret_cast<const uint4*>(p), v); }
__device__ __forceinline__ void Store8(float* p, const float* v) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  *reinterpret_cast<float4*>(p + 4) = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void Store8(bf16* p, const float* v) { *reinterpret_cast<uint4*>(p) = FToBf16x8(v); }

template <typename A, typename X, typename O>
__global__ void AddRmsNormVecKernel(A* __restrict__ acc, int64_t acc_stride, const X* __restrict__ x,
                                    int64_t x_stride, const float* __restrict__ w, float eps, O* __restrict__ out,
                                    int64_t out_stride, int64_t cols) {
  PdlTrigger();
  PdlWait();
  const int64_t c = int64_t{threadIdx.x} * 8;
  const bool on = c < cols;
  A* a = acc + blockIdx.x * acc_stride + c;
  float v[8] = {}, wv[8];
  float ss = 0.0f;
  if (on) {
    Load8(a, v);
    Load8(w + c, wv);
    if (x != nullptr) {
      float xv[8];
      Load8(x + blockIdx.x * x_stride + c, xv);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = ToF(FromF<A>(v[i] + xv[i]));  // what is stored is normalized
      Store8(a, v);
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) ss += v[i] * v[i];
  }
  ss = BlockSum(ss);
  const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(ss) / static_cast<double>(cols) + eps));
  if (on) {
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = v[i] * scale * wv[i];
    Store8(out + blockIdx.x * out_stride + c, v);
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename A, typename X>
__global__ void AddKernel(A* __restrict__ acc, int64_t acc_stride, const X* __restrict__ x, int64_t x_stride,
                          int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    A& a = acc[r * acc_stride + c];
    a = FromF<A>(ToF(a) + ToF(x[r * x_stride + c]));
  }
}

int ThreadsFor(int64_t cols) { return cols >= 2048 ? 512 : cols >= 512 ? 256 : 64; }

// Dispatch over (A, X, O) in {f32, bf16}^3; X absent (nullptr) means plain RMSNorm of acc.
template <typename A, typename X>
Status NormOut(A* acc, int64_t acc_stride, const X* x, int64_t x_stride, const float* w, float eps, void* out,
               DType out_type, int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream) {
  const bool vec = cols % 8 == 0 && cols <= 8 * kVecThreads && acc_stride % 8 == 0 && out_stride % 8 == 0 &&
                   (x == nullptr || x_stride % 8 == 0) && Aligned16(acc) && Aligned16(out) && Aligned16(w) &&
                   (x == nullptr || Aligned16(x));
  if (vec) {
    const int threads = static_cast<int>((cols / 8 + 31) / 32 * 32);
    if (out_type == DType::kF32) {
      CUDA_CHECK(LaunchPdl(AddRmsNormVecKernel<A, X, float>, dim3(static_cast<unsigned>(rows)), dim3(threads), 0,
                           stream, acc, acc_stride, x, x_stride, w, eps, static_cast<float*>(out), out_stride, cols));
    } else {
      CUDA_CHECK(LaunchPdl(AddRmsNormVecKernel<A, X, bf16>, dim3(static_cast<unsigned>(rows)), dim3(threads), 0,
                           stream, acc, acc_stride, x, x_stride, w, eps, static_cast<bf16*>(out), out_stride, cols));
    }
    return OkStatus();
  }
  const int threads = ThreadsFor(cols);
  if (out_type == DType::kF32) {
    AddRmsNormKernel<<<rows, threads, 0, stream>>>(acc, acc_stride, x, x_stride, w, eps, static_cast<float*>(out),
                                                   out_stride, cols);
  } else {
    AddRmsNormKernel<<<rows, threads, 0, stream>>>(acc, acc_stride, x, x_stride, w, eps, static_cast<bf16*>(out),
                                                   out_stride, cols);
  }
  CUDA_CHECK_LAUNCH("AddRmsNormKernel");
  return OkStatus();
}

template <typename A>
Status NormX(A* acc, int64_t acc_stride, const void* x, DType x_type, int64_t x_stride, const float* w, float eps,
             void* out, DType out_type, int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (x_type == DType::kF32)
    return NormOut(acc, acc_stride, static_cast<const float*>(x), x_stride, w, eps, out, out_type, out_stride, rows,
                   cols, stream);
  return NormOut(acc, acc_stride, static_cast<const bf16*>(x), x_stride, w, eps, out, out_type, out_stride, rows, cols,
                 stream);
}

Status Norm(void* acc, DType acc_type, int64_t acc_stride, const void* x, DType x_type, int64_t x_stride,
            const float* w, float eps, void* out, DType out_type, int64_t out_stride, int64_t rows, int64_t cols,
            cudaStream_t stream, const char* name) {
  SLIM_GPU_REQUIRE(acc_type == DType::kF32 || acc_type == DType::kBF16, name);
  SLIM_GPU_REQUIRE(x_type == DType::kF32 || x_type == DType::kBF16, name);
  SLIM_GPU_REQUIRE(out_type == DType::kF32 || out_type == DType::kBF16, name);
  SLIM_GPU_REQUIRE(rows >= 0 && rows < (int64_t{1} << 31) && cols > 0 && acc_stride >= cols && out_stride >= cols, name);
  SLIM_GPU_REQUIRE(x == nullptr || x_stride >= cols, name);
  if (rows == 0) return OkStatus();
  if (acc_type == DType::kF32)
    return NormX(static_cast<float*>(acc), acc_stride, x, x_type, x_stride, w, eps, out, out_type, out_stride, rows,
                 cols, stream);
  return NormX(static_cast<bf16*>(acc), acc_stride, x, x_type, x_stride, w, eps, out, out_type, out_stride, rows, cols,
               stream);
}

template <typename A>
Status AddTo(A* acc, int64_t acc_stride, const void* x, DType x_type, int64_t x_stride, int64_t rows, int64_t cols,
             cudaStream_t stream) {
  const int64_t blocks = (rows * cols + 255) / 256;
  const int grid = static_cast<int>(blocks < 65536 ? blocks : 65536);
  if (x_type == DType::kF32) {
    AddKernel<<<grid, 256, 0, stream>>>(acc, acc_stride, static_cast<const float*>(x), x_stride, rows, cols);
  } else {
    AddKernel<<<grid, 256, 0, stream>>>(acc, acc_stride, static_cast<const bf16*>(x), x_stride, rows, cols);
  }
  CUDA_CHECK_LAUNCH("AddKernel");
  return OkStatus();
}

}  // namespace

Status LaunchRmsNorm(const void* x, DType x_type, int64_t x_stride, const float* w, float eps, void* out,
                     DType out_type, int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream) {
  // The kernel only reads acc when no addend is given.
  return Norm(const_cast<void*>(x), x_type, x_stride, nullptr, DType::kF32, cols, w, eps, out, out_type, out_stride,
              rows, cols, stream, "LaunchRmsNorm");
}

Status LaunchAdd(void* acc, DType acc_type, int64_t acc_stride, const void* x, DType x_type, int64_t x_stride,
                 int64_t rows, int64_t cols, cudaStream_t stream) {
  const char* name = "LaunchAdd";
  SLIM_GPU_REQUIRE(acc_type == DType::kF32 || acc_type == DType::kBF16, name);
  SLIM_GPU_REQUIRE(x_type == DType::kF32 || x_type == DType::kBF16, name);
  SLIM_GPU_REQUIRE(rows >= 0 && cols >= 0 && acc_stride >= cols && (x_stride >= cols || x_stride == 0), name);
  if (rows == 0 || cols == 0) return OkStatus();
  if (acc_type == DType::kF32)
    return AddTo(static_cast<float*>(acc), acc_stride, x, x_type, x_stride, rows, cols, stream);
  return AddTo(static_cast<bf16*>(acc), acc_stride, x, x_type, x_stride, rows, cols, stream);
}

Status LaunchAddRmsNorm(void* acc, DType acc_type, int64_t acc_stride, const void* x, DType x_type, int64_t x_stride,
                        const float* w, float eps, void* out, DType out_type, int64_t out_stride, int64_t rows,
                        int64_t cols, cudaStream_t stream) {
  SLIM_GPU_REQUIRE(x != nullptr, "LaunchAddRmsNorm");
  return Norm(acc, acc_type, acc_stride, x, x_type, x_stride, w, eps, out, out_type, out_stride, rows, cols, stream,
              "LaunchAddRmsNorm");
}

}  // namespace slim::cuda
