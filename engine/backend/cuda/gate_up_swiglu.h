// The gate and up projections of a SwiGLU MLP with the activation fused into the product's
// epilogue (sm_90a): act[n, ff] = silu(x W[0:ff]^T) * (x W[ff:2ff]^T), bf16 in and out, fp32
// accumulation; the kernel is in gate_up_swiglu_sm90.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/core/status.h"

namespace slim::cuda {

struct GateUpSwiGluArgs {
  const void* x = nullptr;  // bf16 [n_rows, d], row stride x_stride (elements)
  int64_t x_stride = 0;
  const void* w = nullptr;  // bf16 [2 ff, d]: gate rows then up rows, row stride w_stride
  int64_t w_stride = 0;
  void* out = nullptr;      // bf16 [n_rows, ff], row stride out_stride
  int64_t out_stride = 0;
  int64_t n_rows = 0, ff = 0, d = 0;
};

// True on an sm_90 device with the sm_90a kernel loaded and the driver's tensor-map encoder.
bool GateUpSwiGluSm90Available();
// Shapes, strides and alignments the kernel takes (ff a multiple of 128, d of 64).
bool GateUpSwiGluSupports(const GateUpSwiGluArgs& a);
Status LaunchGateUpSwiGlu(const GateUpSwiGluArgs& a, cudaStream_t stream);

}  // namespace slim::cuda
