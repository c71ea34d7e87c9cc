// Helpers shared by the CUDA tests: whether a GPU is here, random token ids, host values rounded to bf16 (so both backends see the same
// inputs), the relative L2 error the tolerances are stated in, and host <-> backend buffers.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine/backend/backend.h"

namespace slim {

// Whether a CUDA backend can be created here (tests skip without one).
inline bool HaveGpu() {
  static const bool have = [] {
    BackendOptions o;
    o.device = Device::kCuda;
    return CreateBackend(o).ok();
  }();
  return have;
}

// n token ids uniform in [0, vocab).
inline std::vector<int32_t> RandomIds(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  return ids;
}

// Round to nearest even bf16, kept in a float.
inline float RoundBf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

// Uniform in [-scale, scale), rounded to bf16 (xorshift: fast enough for the LM head's 0.5 G).
inline std::vector<float> RandomBf16(size_t n, uint64_t seed, float scale) {
  std::vector<float> v(n);
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (float& x : v) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x = RoundBf16(scale * (static_cast<float>(s >> 40) * (2.0f / 16777216.0f) - 1.0f));
  }
  return v;
}

// Tolerances of products of bf16-rounded inputs (relative L2): f32 output is fp32 accumulation of
// exact bf16 products, only the order differs; bf16 output adds one rounding (<= 2^-9 an element).
inline constexpr double kProductTolF32 = 1e-5;
inline constexpr double kProductTolBf16 = 3e-3;

// ||got - want|| / ||want|| over the first `count` elements (all of `want` by default); infinite
// when `got` holds a non-finite value there.
inline double RelL2(const std::vector<float>& got, const std::vector<float>& want,
                    size_t count = std::numeric_limits<size_t>::max()) {
  count = std::min(count, want.size());
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    den += double(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// A buffer on `be` holding `host` ([rows, cols], row-major, converted to `t`).
inline Buffer Put(Backend* be, DType t, const std::vector<float>& host, int64_t rows, int64_t cols) {
  auto b = be->Alloc(t, rows, cols);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_TRUE(be->Upload(host.data(), b->view()).ok());
  return std::move(*b);
}

// The view's values as host floats.
inline std::vector<float> Get(Backend* be, TensorView v) {
  std::vector<float> h(static_cast<size_t>(v.rows * v.cols));
  Status s = be->Download(v, h.data());
  EXPECT_TRUE(s.ok()) << s.ToString();
  return h;
}

}  // namespace slim
