// Host loops over one row of logits shared by the Sampler (sampler.cpp) and the reference logits
// summary (logits_summary.cpp): vectorized max and exp-sum, and the k best ids. One copy of each,
// so both paths compute the same bits. Internal to engine/sampler.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>

namespace slim::row_math {

// Eight floats in a vector register (GCC/Clang vector extensions): the hot reductions over the
// vocabulary are written with them because the auto-vectorizer gives up on the exp below.
typedef float V8 __attribute__((vector_size(32)));
typedef int32_t V8i __attribute__((vector_size(32)));

inline V8 Load8(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void Store8(float* p, V8 v) { std::memcpy(p, &v, sizeof(v)); }
inline V8 Splat8(float x) { return V8{} + x; }

// exp(x) for x <= 0 (the scaled logits minus their max), eight at a time: Cephes' polynomial
// after x = n ln2 + r, relative error about 2e-7; 0 below -87 (and for -inf).
inline V8 ExpNonPositive8(V8 x) {
  const V8i underflow = x < Splat8(-87.0f);
  x = underflow ? Splat8(-87.0f) : x;
  // round(x / ln2) by the 1.5 * 2^23 trick (|x / ln2| < 2^22 here).
  const V8 n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
  const V8 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // |r| <= ln2 / 2
  V8 q = Splat8(1.9875691500e-4f);
  q = q * r + 1.3981999507e-3f;
  q = q * r + 8.3334519073e-3f;
  q = q * r + 4.1665795894e-2f;
  q = q * r + 1.6666665459e-1f;
  q = q * r + 5.0000001201e-1f;
  q = q * r * r + r + 1.0f;
  const V8i bits = (__builtin_convertvector(n, V8i) + 127) << 23;
  const V8 scale = std::bit_cast<V8>(bits);
  const V8 e = q * scale;
  const V8i masked = std::bit_cast<V8i>(e) & ~underflow;
  return std::bit_cast<V8>(masked);
}

// Max of x[0, n) (no NaNs).
inline float MaxOf(const float* x, size_t n) {
  V8 m0 = Splat8(-std::numeric_limits<float>::infinity()), m1 = m0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const V8 a = Load8(x + i), b = Load8(x + i + 8);
    m0 = a > m0 ? a : m0;
    m1 = b > m1 ? b : m1;
  }
  float m = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < 8; ++j) m = std::max({m, m0[j], m1[j]});
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

// out[i] = exp((w[i] - max) * inv_t) for i in [0, n); returns their sum.
inline double ExpSum(const float* w, size_t n, float max, float inv_t, float* out) {
  const V8 vmax = Splat8(max), vt = Splat8(inv_t);
  double total = 0.0;
  size_t i = 0;
  // Float lane sums are folded into the double every 4096 elements to stay accurate.
  while (i + 8 <= n) {
    const size_t end = i + std::min<size_t>((n - i) / 8 * 8, 4096);
    V8 acc = V8{};
    for (; i < end; i += 8) {
      const V8 e = ExpNonPositive8((Load8(w + i) - vmax) * vt);
      Store8(out + i, e);
      acc += e;
    }
    for (int j = 0; j < 8; ++j) total += acc[j];
  }
  if (i < n) {  // tail, padded with -inf (weight 0)
    float tmp[8];
    std::fill(tmp, tmp + 8, -std::numeric_limits<float>::infinity());
    std::copy(w + i, w + n, tmp);
    const V8 e = ExpNonPositive8((Load8(tmp) - vmax) * vt);
    for (size_t j = 0; i + j < n; ++j) {
      out[i + j] = e[j];
      total += e[j];
    }
  }
  return total;
}

// "Token a before token b": higher logit, ties to the lower id (over logits w by id).
struct Before {
  const float* w;
  bool operator()(int32_t a, int32_t b) const { return w[a] > w[b] || (w[a] == w[b] && a < b); }
};

// Writes the ids of the k best of w[0, n) (Before order) to ids[0, k), sorted by Before.
// ids: [n + 1] scratch (the whole of it may be written).
inline void SelectTopIds(const float* w, size_t n, size_t k, int32_t* ids) {
  const Before before{w};
  if (k * 16 > n) {
    std::iota(ids, ids + n, 0);
    std::nth_element(ids, ids + k, ids + n, before);
  } else {
    // Heap of the k best so far with the worst on top; a later id only enters by a strictly
    // higher logit, which keeps ties on the lowest ids.
    std::iota(ids, ids + k, 0);
    std::make_heap(ids, ids + k, before);
    for (size_t i = k; i < n; ++i) {
      if (w[i] > w[ids[0]]) {
        std::pop_heap(ids, ids + k, before);
        ids[k - 1] = static_cast<int32_t>(i);
        std::push_heap(ids, ids + k, before);
      }
    }
  }
  std::sort(ids, ids + k, before);
}

}  // namespace slim::row_math
