// Quantized GEMV kernels: AVX2/FMA when compiled for it, scalar otherwise.
#include "engine/backend/cpu/quant_gemv.h"

#include <cstring>

#include "engine/gguf/quant.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SLIM_QGEMV_AVX2 1
#endif

namespace slim::cpu {
namespace {

constexpr int kQK = 32;

inline float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return gguf::Fp16ToFp32(h);
}

// Dequantizes one block of 32 into `v` (scalar path; also the reference for the AVX2 path).
inline void DequantBlock(gguf::TensorType t, const uint8_t* b, float* v) {
  switch (t) {
    case gguf::TensorType::kQ4_0: {
      const float d = Half(b);
      for (int j = 0; j < 16; ++j) {
        v[j] = static_cast<float>((b[2 + j] & 0x0F) - 8) * d;
        v[j + 16] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
      }
      break;
    }
    case gguf::TensorType::kQ4_1: {
      const float d = Half(b), m = Half(b + 2);
      for (int j = 0; j < 16; ++j) {
        v[j] = static_cast<float>(b[4 + j] & 0x0F) * d + m;
        v[j + 16] = static_cast<float>(b[4 + j] >> 4) * d + m;
      }
      break;
    }
    default: {  // Q8_0
      const float d = Half(b);
      for (int j = 0; j < 32; ++j) v[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
      break;
    }
  }
}

#ifdef SLIM_QGEMV_AVX2
// fp16 -> fp32 with the F16C instruction (exact, like gguf::Fp16ToFp32), inlined.
inline float HalfF16C(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline float HSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// The 32 values of one block as four 8-lane vectors, exactly as DequantBlock computes them.
inline void DequantBlockAvx(gguf::TensorType t, const uint8_t* b, __m256 w[4]) {
  if (t == gguf::TensorType::kQ8_0) {
    const __m256 d = _mm256_set1_ps(HalfF16C(b));
    for (int g = 0; g < 4; ++g) {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2 + 8 * g));
      w[g] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), d);
    }
    return;
  }
  const bool q41 = t == gguf::TensorType::kQ4_1;
  const __m256 d = _mm256_set1_ps(HalfF16C(b));
  const uint8_t* qs = b + (q41 ? 4 : 2);
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(bytes, mask);                       // elements 0..15
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);    // elements 16..31
  __m256i q[4] = {_mm256_cvtepu8_epi32(lo), _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)),
                  _mm256_cvtepu8_epi32(hi), _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))};
  if (q41) {
    const __m256 m = _mm256_set1_ps(HalfF16C(b + 2));
    for (int g = 0; g < 4; ++g) w[g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q[g]), d, m);
  } else {
    const __m256i eight = _mm256_set1_epi32(8);
    for (int g = 0; g < 4; ++g) w[g] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q[g], eight)), d);
  }
}

// N inputs; A independent accumulators per input so the FMA chains overlap (one chain of four
// dependent FMAs per block would cost 16 cycles).
template <int N>
void RowsAvx(gguf::TensorType t, const uint8_t* w, size_t bb, int64_t nb, size_t row_bytes, const float* x,
             int64_t x_stride, float* out, int64_t out_stride, int64_t row_begin, int64_t row_end) {
  constexpr int A = N == 1 ? 4 : N <= 3 ? 2 : 1;
  for (int64_t o = row_begin; o < row_end; ++o) {
    const uint8_t* row = w + static_cast<size_t>(o) * row_bytes;
    __m256 acc[N][A];
    for (int r = 0; r < N; ++r)
      for (int k = 0; k < A; ++k) acc[r][k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256 wv[4];
      DequantBlockAvx(t, row + static_cast<size_t>(b) * bb, wv);
      for (int r = 0; r < N; ++r) {
        const float* xr = x + r * x_stride + b * kQK;
        for (int g = 0; g < 4; ++g) acc[r][g % A] = _mm256_fmadd_ps(wv[g], _mm256_loadu_ps(xr + 8 * g), acc[r][g % A]);
      }
    }
    for (int r = 0; r < N; ++r) {
      __m256 sum = acc[r][0];
      for (int k = 1; k < A; ++k) sum = _mm256_add_ps(sum, acc[r][k]);
      out[r * out_stride + o] = HSum(sum);
    }
  }
}
#endif

}  // namespace

bool CanQuantGemv(gguf::TensorType t) {
  return t == gguf::TensorType::kQ4_0 || t == gguf::TensorType::kQ4_1 || t == gguf::TensorType::kQ8_0;
}

size_t QuantRowBytes(gguf::TensorType t, int64_t cols) {
  return static_cast<size_t>(cols / kQK) * gguf::BlockBytes(t);
}

void QuantGemvRows(gguf::TensorType t, const uint8_t* w, int64_t cols, const float* x, int64_t x_stride,
                   int n_in, float* out, int64_t out_stride, int64_t row_begin, int64_t row_end) {
  const size_t bb = gguf::BlockBytes(t);
  const int64_t nb = cols / kQK;
  const size_t row_bytes = static_cast<size_t>(nb) * bb;
#ifdef SLIM_QGEMV_AVX2
  switch (n_in) {
    case 1: RowsAvx<1>(t, w, bb, nb, row_bytes, x, x_stride, out, out_stride, row_begin, row_end); return;
    case 2: RowsAvx<2>(t, w, bb, nb, row_bytes, x, x_stride, out, out_stride, row_begin, row_end); return;
    case 3: RowsAvx<3>(t, w, bb, nb, row_bytes, x, x_stride, out, out_stride, row_begin, row_end); return;
    case 4: RowsAvx<4>(t, w, bb, nb, row_bytes, x, x_stride, out, out_stride, row_begin, row_end); return;
    case 5: RowsAvx<5>(t, w, bb, nb, row_bytes, x, x_stride, out, out_stride, row_begin, row_end); return;
    case 6: RowsAvx<6>(t, w, bb, nb, row_bytes, x, x_stride, out, out_stride, row_begin, row_end); return;
    case 7: RowsAvx<7>(t, w, bb, nb, row_bytes, x, x_stride, out, out_stride, row_begin, row_end); return;
    default: RowsAvx<8>(t, w, bb, nb, row_bytes, x, x_stride, out, out_stride, row_begin, row_end); return;
  }
#else
  float v[kQK];
  for (int64_t o = row_begin; o < row_end; ++o) {
    const uint8_t* row = w + static_cast<size_t>(o) * row_bytes;
    float acc[8] = {0};
    for (int64_t b = 0; b < nb; ++b) {
      DequantBlock(t, row + static_cast<size_t>(b) * bb, v);
      for (int r = 0; r < n_in; ++r) {
        const float* xr = x + r * x_stride + b * kQK;
        for (int j = 0; j < kQK; ++j) acc[r] += v[j] * xr[j];
      }
    }
    for (int r = 0; r < n_in; ++r) out[r * out_stride + o] = acc[r];
  }
#endif
}

}  // namespace slim::cpu
