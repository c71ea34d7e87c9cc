// ggml tensor type sizes and dequantization to fp32 (F32, F16, BF16, the legacy 32-element
// quants, the K-quants Q2_K..Q6_K, IQ4_NL and IQ4_XS). Pure functions, no allocation; any thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/core/status.h"
#include "engine/gguf/gguf_file.h"

namespace slim::gguf {

const char* TensorTypeName(TensorType t);
// Elements per block (1 for F32/F16/BF16, 32 for Q4_0..Q8_1 and IQ4_NL, 256 for the K-quants and
// IQ4_XS); 0 if unknown.
int64_t BlockElements(TensorType t);
// Bytes per block; 0 if unknown.
size_t BlockBytes(TensorType t);
// True when DequantizeRow supports the type.
bool CanDequantize(TensorType t);
// Bytes that `n_elements` of type `t` occupy; InvalidArgument when n is not a multiple of the
// block size or the byte count overflows.
StatusOr<uint64_t> TensorBytes(TensorType t, uint64_t n_elements);

// Dequantizes `n` consecutive elements (a multiple of BlockElements(t)) starting at `src`
// (which must be at a block boundary) into `dst`. As in ggml, a NaN or infinite fp16 scale is
// not checked here: it yields non-finite values, which the weight loader refuses.
Status DequantizeRow(TensorType t, const void* src, float* dst, int64_t n);

// fp16 / bf16 scalar conversions.
float Fp16ToFp32(uint16_t h);
uint16_t Fp32ToFp16(float f);
float Bf16ToFp32(uint16_t b);
uint16_t Fp32ToBf16(float f);  // round to nearest even

}  // namespace slim::gguf
