// Vectorizable scalar kernels of the CPU backend (exp, dot, axpy, softmax, RMSNorm row), kept
// inline so loops over them auto-vectorize. Also the CPU reference for the CUDA kernels' tests.
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

namespace slim::cpu {

// exp(x) for x <= 0 (softmax inputs after max subtraction); relative error ~2e-7, returns 0
// below -87. Branch-free so the calling loop vectorizes.
inline float ExpNonPositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float t = x * 1.44269504088896341f;         // x / ln 2
  const float fi = std::floor(t);
  const float f = t - fi;                            // [0, 1)
  // 2^f on [0, 1): minimax polynomial, degree 6.
  float p = 1.535336188319500e-4f;
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &p, sizeof bits);
  bits += static_cast<int32_t>(fi) << 23;
  float r;
  std::memcpy(&r, &bits, sizeof r);
  return r;
}

inline float Dot(const float* a, const float* b, int n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y += a * x
inline void Axpy(float a, const float* x, float* y, int n) {
#pragma omp simd
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

// ---- f16 KV rows (F16C, part of x86-64-v3) ----------------------------------------------------
using f16 = uint16_t;

inline void ToF16(const float* x, f16* y, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

inline void FromF16(const f16* x, float* y, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  for (; i < n; ++i) y[i] = _cvtsh_ss(x[i]);
}

inline float Dot(const float* a, const f16* b, int n) {
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8)
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i))), acc);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  float r = _mm_cvtss_f32(s);
  for (; i < n; ++i) r += a[i] * _cvtsh_ss(b[i]);
  return r;
}

// y += a * x
inline void Axpy(float a, const f16* x, float* y, int n) {
  const __m256 va = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))),
                                            _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * _cvtsh_ss(x[i]);
}

// In-place softmax of row[0, n); returns nothing, row sums to 1.
inline void SoftmaxRow(float* row, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = row[i] > mx ? row[i] : mx;
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    row[i] = ExpNonPositive(row[i] - mx);
    sum += row[i];
  }
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) row[i] *= inv;
}

// out = x / sqrt(mean(x^2) + eps) * w
inline void RmsNormRow(const float* x, const float* w, float eps, float* out, int64_t n) {
  double ss = 0.0;
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += x[i] * x[i];
  ss = s;
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }

}  // namespace slim::cpu
