// Few-row products (decode): out[n, m] = x[n, k] * w[m, k]^T for n <= 8, bf16 x and w, fp32
// accumulation, bf16 or f32 out; optionally x = SwiGLU of a gate_up tensor, fused. Streams w
// once at memory bandwidth. Shapes GemvSupports refuses are left to cuBLAS by the caller.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/status.h"
#include "engine/core/tensor.h"

namespace slim::cuda {

constexpr int64_t kGemvMaxRows = 8;

// Strides in elements. x, w (and gate_up) need 16-byte aligned data, k and strides multiples of
// 8; out takes any stride and alignment.
struct GemvArgs {
  // bf16 x [n, k]; with swiglu, bf16 gate_up [n, 2 * k] and x[r, j] = bf16(silu(gate_up[r, j]) *
  // gate_up[r, k + j]), rounded as LaunchSwiGlu rounds its output.
  const void* x = nullptr;
  int64_t x_stride = 0;
  bool swiglu = false;
  const void* w = nullptr;  // bf16 [m, k]
  int64_t w_stride = 0;
  void* out = nullptr;  // [n, m]
  DType out_dtype = DType::kBF16;  // bf16 or f32
  int64_t out_stride = 0;
  int64_t n = 0, m = 0, k = 0;
};

// Whether LaunchGemv takes these arguments (shape, strides, alignment, dtypes); host only.
bool GemvSupports(const GemvArgs& a);

// InvalidArgument where GemvSupports is false.
Status LaunchGemv(const GemvArgs& a, cudaStream_t stream);

}  // namespace slim::cuda
