// Matrix-vector products straight from GGUF-quantized weight rows (Q4_0, Q4_1, Q8_0), for the
// CPU backend's memory-bound decode steps: each block is dequantized in registers and used for
// every input row, so the weights stream once at 0.56-1.06 bytes per element instead of 4.
// Arithmetic is fp32, on exactly the values DequantizeRow produces.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/gguf/gguf_file.h"

namespace slim::cpu {

bool CanQuantGemv(gguf::TensorType t);
// Bytes of one row of `cols` elements.
size_t QuantRowBytes(gguf::TensorType t, int64_t cols);

// out[r, o] = sum_k x[r, k] * W[o, k] for r < n_in (<= 8), o in [row_begin, row_end).
// W: quantized rows, row o at w + o * QuantRowBytes(t, cols). x rows at x + r * x_stride,
// out rows at out + r * out_stride.
void QuantGemvRows(gguf::TensorType t, const uint8_t* w, int64_t cols, const float* x, int64_t x_stride,
                   int n_in, float* out, int64_t out_stride, int64_t row_begin, int64_t row_end);

}  // namespace slim::cpu
