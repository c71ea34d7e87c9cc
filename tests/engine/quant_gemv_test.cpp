// The CPU backend's quantized GEMV against DequantizeRow + a double-precision dot product, on
// random blocks of every supported type and 1..8 input rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "engine/backend/cpu/quant_gemv.h"
#include "engine/gguf/quant.h"

namespace slim::cpu {
namespace {

std::vector<uint8_t> RandomBlocks(gguf::TensorType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  const size_t bb = gguf::BlockBytes(t);
  std::vector<uint8_t> data(static_cast<size_t>(rows * cols / 32) * bb);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  // Sane fp16 scales (random bytes would give inf/nan): d in [0.001, 0.1), m in (-0.5, 0.5).
  std::uniform_real_distribution<float> ud(0.001f, 0.1f), um(-0.5f, 0.5f);
  for (size_t off = 0; off < data.size(); off += bb) {
    const uint16_t d = gguf::Fp32ToFp16(ud(rng));
    std::memcpy(&data[off], &d, 2);
    if (t == gguf::TensorType::kQ4_1) {
      const uint16_t m = gguf::Fp32ToFp16(um(rng));
      std::memcpy(&data[off + 2], &m, 2);
    }
  }
  return data;
}

TEST(QuantGemv, MatchesDequantizedDot) {
  std::mt19937 rng(77);
  std::normal_distribution<float> nd;
  const int64_t rows = 96, cols = 576;
  for (gguf::TensorType t : {gguf::TensorType::kQ4_0, gguf::TensorType::kQ4_1, gguf::TensorType::kQ8_0}) {
    ASSERT_TRUE(CanQuantGemv(t));
    std::vector<uint8_t> w = RandomBlocks(t, rows, cols, rng);
    ASSERT_EQ(w.size(), QuantRowBytes(t, cols) * rows);
    std::vector<float> dense(static_cast<size_t>(rows * cols));
    ASSERT_TRUE(gguf::DequantizeRow(t, w.data(), dense.data(), rows * cols).ok());
    for (int n_in : {1, 3, 8}) {
      std::vector<float> x(static_cast<size_t>(n_in * cols));
      for (auto& v : x) v = nd(rng);
      std::vector<float> out(static_cast<size_t>(n_in * rows), -1.0f);
      // Two ranges, as the thread pool would split them.
      QuantGemvRows(t, w.data(), cols, x.data(), cols, n_in, out.data(), rows, 0, 40);
      QuantGemvRows(t, w.data(), cols, x.data(), cols, n_in, out.data(), rows, 40, rows);
      for (int r = 0; r < n_in; ++r)
        for (int64_t o = 0; o < rows; ++o) {
          double ref = 0.0, mag = 0.0;
          for (int64_t k = 0; k < cols; ++k) {
            ref += static_cast<double>(dense[static_cast<size_t>(o * cols + k)]) * x[static_cast<size_t>(r * cols + k)];
            mag += std::fabs(dense[static_cast<size_t>(o * cols + k)] * x[static_cast<size_t>(r * cols + k)]);
          }
          ASSERT_NEAR(out[static_cast<size_t>(r * rows + o)], ref, 1e-5 * mag + 1e-6)
              << gguf::TensorTypeName(t) << " input " << r << " row " << o;
        }
    }
  }
  EXPECT_FALSE(CanQuantGemv(gguf::TensorType::kF32));
}

}  // namespace
}  // namespace slim::cpu
