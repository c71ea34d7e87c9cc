// Dequantization against independent references: hand-built blocks with known values, fp16/bf16
// edge cases (exhaustive over all halves), random blocks (also with non-finite scales) and real
// model rows dequantized by the Python gguf package (tests/fixtures/quant_reference.json, from
// scripts/make-quant-fixtures.py).
#include "engine/gguf/quant.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "engine/gguf/gguf_file.h"
#include "tests/gguf/default_model.h"

namespace slim::gguf {
namespace {

// fp16 -> fp32 by the definition (sign, 5-bit exponent bias 15, 10-bit mantissa).
double HalfByDefinition(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
  double v;
  if (exp == 0) v = std::ldexp(mant, -24);
  else if (exp == 31) v = mant == 0 ? INFINITY : NAN;
  else v = std::ldexp(1024 + mant, exp - 25);
  return sign ? -v : v;
}

TEST(Fp16, KnownValues) {
  EXPECT_EQ(Fp16ToFp32(0x3C00), 1.0f);
  EXPECT_EQ(Fp16ToFp32(0xC000), -2.0f);
  EXPECT_EQ(Fp16ToFp32(0x7BFF), 65504.0f);                 // max finite
  EXPECT_EQ(Fp16ToFp32(0x0400), std::ldexp(1.0f, -14));   // min normal
  EXPECT_EQ(Fp16ToFp32(0x0001), std::ldexp(1.0f, -24));   // min subnormal
  EXPECT_EQ(Fp16ToFp32(0x03FF), std::ldexp(1023.0f, -24));  // max subnormal
  EXPECT_EQ(Fp16ToFp32(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(std::bit_cast<uint32_t>(Fp16ToFp32(0x8000)), 0x80000000u);  // -0 keeps its sign
  EXPECT_EQ(Fp16ToFp32(0x7C00), INFINITY);
  EXPECT_EQ(Fp16ToFp32(0xFC00), -INFINITY);
  EXPECT_TRUE(std::isnan(Fp16ToFp32(0x7E00)));
  EXPECT_TRUE(std::isnan(Fp16ToFp32(0x7C01)));  // signalling NaN stays NaN
  EXPECT_TRUE(std::signbit(Fp16ToFp32(0xFE00)));
}

TEST(Fp16, ExhaustiveAgainstDefinitionAndRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = Fp16ToFp32(static_cast<uint16_t>(h));
    const double ref = HalfByDefinition(static_cast<uint16_t>(h));
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(f)) << h;
      const uint16_t back = Fp32ToFp16(f);
      ASSERT_TRUE((back & 0x7C00) == 0x7C00 && (back & 0x03FF) != 0) << h;  // still NaN
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), ref) << "h=0x" << std::hex << h;
    ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << h;
    ASSERT_EQ(Fp32ToFp16(f), h) << "round trip of 0x" << std::hex << h;
  }
}

TEST(Fp16, RoundsToNearestEven) {
  const float ulp1 = std::ldexp(1.0f, -10);  // spacing of halves in [1, 2)
  EXPECT_EQ(Fp32ToFp16(1.0f + ulp1 / 2), 0x3C00);        // tie -> even (down)
  EXPECT_EQ(Fp32ToFp16(1.0f + 3 * ulp1 / 2), 0x3C02);    // tie -> even (up)
  EXPECT_EQ(Fp32ToFp16(std::nextafter(1.0f + ulp1 / 2, 2.0f)), 0x3C01);
  EXPECT_EQ(Fp32ToFp16(65519.0f), 0x7BFF);               // below the halfway point to 65536
  EXPECT_EQ(Fp32ToFp16(65520.0f), 0x7C00);               // tie rounds to even = inf
  EXPECT_EQ(Fp32ToFp16(1e10f), 0x7C00);
  EXPECT_EQ(Fp32ToFp16(-1e10f), 0xFC00);
  EXPECT_EQ(Fp32ToFp16(INFINITY), 0x7C00);
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -25)), 0x0000);          // tie between 0 and min subnormal
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(Fp32ToFp16(std::ldexp(3.0f, -25)), 0x0002);          // tie 1.5 ulp -> even (2)
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(Fp32ToFp16(-0.0f), 0x8000);
  const uint16_t nan = Fp32ToFp16(NAN);
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
}

#ifdef __FLT16_MAX__
// The compiler's own _Float16 conversion is an independent reference for rounding.
TEST(Fp16, MatchesCompilerFloat16OnRandomFloats) {
  std::mt19937 rng(42);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    // Bias towards the half range: exponents 100..150.
    uint32_t u = bits(rng);
    u = (u & 0x807FFFFFu) | ((100u + (u >> 23) % 51) << 23);
    const float f = std::bit_cast<float>(u);
    const auto ref = std::bit_cast<uint16_t>(static_cast<_Float16>(f));
    ASSERT_EQ(Fp32ToFp16(f), ref) << f;
  }
}
#endif

TEST(Bf16, ConversionsAndRounding) {
  EXPECT_EQ(Bf16ToFp32(0x3F80), 1.0f);
  EXPECT_EQ(Bf16ToFp32(0xC0A0), -5.0f);
  EXPECT_EQ(Bf16ToFp32(0x7F80), INFINITY);
  EXPECT_TRUE(std::isnan(Bf16ToFp32(0x7FC1)));
  EXPECT_EQ(Fp32ToBf16(1.0f), 0x3F80);
  EXPECT_EQ(Fp32ToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);      // tie -> even
  EXPECT_EQ(Fp32ToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);  // tie -> even
  EXPECT_EQ(Fp32ToBf16(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 0x3F81);
  EXPECT_EQ(Fp32ToBf16(-INFINITY), 0xFF80);
  EXPECT_EQ(Fp32ToBf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to inf
  const uint16_t nan = Fp32ToBf16(std::bit_cast<float>(0x7F800001u));  // NaN whose top bits are 0
  EXPECT_TRUE(std::isnan(Bf16ToFp32(nan)));
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = Bf16ToFp32(static_cast<uint16_t>(b));
    if (!std::isnan(f)) {
      ASSERT_EQ(Fp32ToBf16(f), b);
    }
  }
}

TEST(TypeTable, SizesMatchGgml) {
  struct Row { TensorType t; int64_t be; size_t bb; bool deq; };
  const Row rows[] = {
      {TensorType::kF32, 1, 4, true},      {TensorType::kF16, 1, 2, true},
      {TensorType::kBF16, 1, 2, true},     {TensorType::kQ4_0, 32, 18, true},
      {TensorType::kQ4_1, 32, 20, true},   {TensorType::kQ5_0, 32, 22, true},
      {TensorType::kQ5_1, 32, 24, true},   {TensorType::kQ8_0, 32, 34, true},
      {TensorType::kQ8_1, 32, 36, false},  {TensorType::kQ2_K, 256, 84, true},
      {TensorType::kQ3_K, 256, 110, true}, {TensorType::kQ4_K, 256, 144, true},
      {TensorType::kQ5_K, 256, 176, true}, {TensorType::kQ6_K, 256, 210, true},
      {TensorType::kQ8_K, 256, 292, false}, {TensorType::kIQ4_NL, 32, 18, true},
      {TensorType::kIQ4_XS, 256, 136, true},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(BlockElements(r.t), r.be) << TensorTypeName(r.t);
    EXPECT_EQ(BlockBytes(r.t), r.bb) << TensorTypeName(r.t);
    EXPECT_EQ(CanDequantize(r.t), r.deq) << TensorTypeName(r.t);
  }
  EXPECT_STREQ(TensorTypeName(TensorType::kQ4_1), "Q4_1");
  EXPECT_EQ(BlockElements(static_cast<TensorType>(4)), 0);  // removed Q4_2
  EXPECT_EQ(BlockBytes(static_cast<TensorType>(99)), 0u);
  EXPECT_FALSE(CanDequantize(static_cast<TensorType>(99)));

  EXPECT_EQ(*TensorBytes(TensorType::kQ4_1, 576 * 576), 576u * 576 / 32 * 20);
  EXPECT_EQ(*TensorBytes(TensorType::kQ6_K, 512), 420u);
  EXPECT_EQ(TensorBytes(TensorType::kQ4_0, 33).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(TensorBytes(TensorType::kF32, uint64_t{1} << 62).status().code(),
            StatusCode::kInvalidArgument);  // 2^64 bytes
  EXPECT_EQ(TensorBytes(static_cast<TensorType>(77), 32).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(DequantizeRow, RejectsBadArguments) {
  float out[64];
  uint8_t in[256] = {};
  EXPECT_EQ(DequantizeRow(TensorType::kQ4_0, in, out, 33).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DequantizeRow(TensorType::kQ4_0, in, out, -32).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DequantizeRow(TensorType::kQ8_K, in, out, 256).code(), StatusCode::kUnimplemented);
  // The 256-element super-block types refuse a partial super-block, naming the type.
  for (TensorType t : {TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kIQ4_XS}) {
    const Status st = DequantizeRow(t, in, out, 128);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << TensorTypeName(t);
    EXPECT_NE(st.message().find(TensorTypeName(t)), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("256"), std::string::npos) << st.message();
    EXPECT_EQ(TensorBytes(t, 300).status().code(), StatusCode::kInvalidArgument) << TensorTypeName(t);
  }
  EXPECT_EQ(DequantizeRow(TensorType::kIQ4_NL, in, out, 48).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DequantizeRow(static_cast<TensorType>(5), in, out, 32).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(DequantizeRow(TensorType::kF32, nullptr, out, 4).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(DequantizeRow(TensorType::kQ8_0, nullptr, nullptr, 0).ok());
}

void PutHalf(uint8_t* p, float v) {
  const uint16_t h = Fp32ToFp16(v);
  std::memcpy(p, &h, 2);
}

TEST(DequantizeRow, HandBuiltQ4_0) {
  // Two blocks: d = 0.5 and d = -2; qs[j] = j | (15 - j) << 4.
  uint8_t blk[2 * 18];
  PutHalf(blk, 0.5f);
  PutHalf(blk + 18, -2.0f);
  for (int b = 0; b < 2; ++b) {
    for (int j = 0; j < 16; ++j) blk[b * 18 + 2 + j] = static_cast<uint8_t>(j | (15 - j) << 4);
  }
  float out[64];
  ASSERT_TRUE(DequantizeRow(TensorType::kQ4_0, blk, out, 64).ok());
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], (j - 8) * 0.5f) << j;             // low nibbles: elements 0..15
    EXPECT_EQ(out[16 + j], (15 - j - 8) * 0.5f) << j;   // high nibbles: elements 16..31
    EXPECT_EQ(out[32 + j], (j - 8) * -2.0f) << j;
    EXPECT_EQ(out[48 + j], (15 - j - 8) * -2.0f) << j;
  }
}

TEST(DequantizeRow, HandBuiltQ4_1) {
  uint8_t blk[20];
  PutHalf(blk, 0.25f);
  PutHalf(blk + 2, -1.5f);
  for (int j = 0; j < 16; ++j) blk[4 + j] = static_cast<uint8_t>((j % 16) | ((j * 7) % 16) << 4);
  float out[32];
  ASSERT_TRUE(DequantizeRow(TensorType::kQ4_1, blk, out, 32).ok());
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], j * 0.25f - 1.5f) << j;
    EXPECT_EQ(out[16 + j], ((j * 7) % 16) * 0.25f - 1.5f) << j;
  }
}

TEST(DequantizeRow, HandBuiltQ8_0AndFloats) {
  uint8_t blk[34];
  PutHalf(blk, 0.125f);
  for (int j = 0; j < 32; ++j) blk[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j * 8 - 128));
  float out[32];
  ASSERT_TRUE(DequantizeRow(TensorType::kQ8_0, blk, out, 32).ok());
  for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], (j * 8 - 128) * 0.125f) << j;

  const float f32[3] = {1.5f, -0.0f, 3e38f};
  float o3[3];
  ASSERT_TRUE(DequantizeRow(TensorType::kF32, f32, o3, 3).ok());
  EXPECT_EQ(std::memcmp(f32, o3, sizeof(f32)), 0);

  const uint16_t f16[3] = {0x3C00, 0x0001, 0xFC00};
  ASSERT_TRUE(DequantizeRow(TensorType::kF16, f16, o3, 3).ok());
  EXPECT_EQ(o3[0], 1.0f);
  EXPECT_EQ(o3[1], std::ldexp(1.0f, -24));
  EXPECT_EQ(o3[2], -INFINITY);

  const uint16_t bf16[3] = {0x3F80, 0xC0A0, 0x0000};
  ASSERT_TRUE(DequantizeRow(TensorType::kBF16, bf16, o3, 3).ok());
  EXPECT_EQ(o3[0], 1.0f);
  EXPECT_EQ(o3[1], -5.0f);
  EXPECT_EQ(o3[2], 0.0f);
}

// Q2_K by its layout (ggml-common.h block_q2_K): scales[16] (low nibble scale, high nibble min),
// qs[64], fp16 d, dmin; element i of half h = i / 128 is bits 2 ((i % 128) / 32) of
// qs[32 h + i % 32]; x = d * scale * q - dmin * min over sub-blocks of 16. Values chosen so
// every product is exact in fp32.
TEST(DequantizeRow, HandBuiltQ2_K) {
  uint8_t blk[2 * 84] = {};
  float want[512];
  for (int b = 0; b < 2; ++b) {
    uint8_t* x = blk + 84 * b;
    const float d = b == 0 ? 0.25f : -0.5f, dmin = b == 0 ? 0.125f : 2.0f;
    PutHalf(x + 80, d);
    PutHalf(x + 82, dmin);
    for (int j = 0; j < 16; ++j) x[j] = static_cast<uint8_t>(((j + b) % 16) | ((15 - j) << 4));
    for (int i = 0; i < 256; ++i) {
      const int q = (i * 7 + i / 16 + b) % 4;
      x[16 + 32 * (i / 128) + i % 32] |= static_cast<uint8_t>(q << (2 * ((i % 128) / 32)));
      want[256 * b + i] = d * static_cast<float>((i / 16 + b) % 16) * static_cast<float>(q) -
                          dmin * static_cast<float>(15 - i / 16);
    }
  }
  float out[512];
  ASSERT_TRUE(DequantizeRow(TensorType::kQ2_K, blk, out, 512).ok());
  for (int i = 0; i < 512; ++i) ASSERT_EQ(out[i], want[i]) << i;
}

// Q3_K by its layout (block_q3_K): hmask[32], qs[64], scales[12], fp16 d. q = low 2 bits (as
// Q2_K) minus 4 unless bit i / 32 of hmask[i % 32] is set; 16 signed 6-bit scales stored +32:
// low nibbles in bytes 0..7 (j < 8: low nibble of byte j, else high nibble of byte j - 8), high
// 2 bits at bits 2 (j / 4) of byte 8 + j % 4.
TEST(DequantizeRow, HandBuiltQ3_K) {
  uint8_t x[110] = {};
  const float d = 0.5f;
  PutHalf(x + 108, d);
  int scale[16];
  for (int j = 0; j < 16; ++j) {
    scale[j] = 4 * j - 32 + (j % 3);  // -32 .. 30
    const int u = scale[j] + 32;
    x[96 + (j < 8 ? j : j - 8)] |= static_cast<uint8_t>((u & 15) << (j < 8 ? 0 : 4));
    x[96 + 8 + j % 4] |= static_cast<uint8_t>((u >> 4) << (2 * (j / 4)));
  }
  float want[256];
  for (int i = 0; i < 256; ++i) {
    const int q = (i * 5 + i / 32) % 8 - 4;  // -4 .. 3
    const int high = q >= 0 ? 1 : 0, low = q >= 0 ? q : q + 4;
    x[i % 32] |= static_cast<uint8_t>(high << (i / 32));
    x[32 + 32 * (i / 128) + i % 32] |= static_cast<uint8_t>(low << (2 * ((i % 128) / 32)));
    want[i] = d * static_cast<float>(scale[i / 16]) * static_cast<float>(q);
  }
  float out[256];
  ASSERT_TRUE(DequantizeRow(TensorType::kQ3_K, x, out, 256).ok());
  for (int i = 0; i < 256; ++i) ASSERT_EQ(out[i], want[i]) << i;
}

// ggml's kvalues_iq4nl, the non-linear grid of IQ4_NL and IQ4_XS.
constexpr int kGrid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// IQ4_XS (block_iq4_xs): fp16 d, uint16 scales_h, scales_l[4], qs[128]; eight sub-blocks of 32
// with 6-bit scales stored +32 (low nibble ib % 2 of scales_l[ib / 2], high bits 2 ib of
// scales_h); element j of sub-block ib is nibble j / 16 of qs[16 ib + j % 16], mapped by the grid.
TEST(DequantizeRow, HandBuiltIQ4_XSAndIQ4_NL) {
  uint8_t x[136] = {};
  const float d = 0.0625f;
  PutHalf(x, d);
  uint16_t scales_h = 0;
  int ls[8];
  for (int ib = 0; ib < 8; ++ib) {
    ls[ib] = (ib * 9 + 3) % 64;
    x[4 + ib / 2] |= static_cast<uint8_t>((ls[ib] & 15) << (4 * (ib % 2)));
    scales_h = static_cast<uint16_t>(scales_h | ((ls[ib] >> 4) << (2 * ib)));
  }
  std::memcpy(x + 2, &scales_h, 2);
  float want[256];
  for (int i = 0; i < 256; ++i) {
    const int ib = i / 32, j = i % 32, idx = (i * 5 + ib) % 16;
    x[8 + 16 * ib + j % 16] |= static_cast<uint8_t>(idx << (j < 16 ? 0 : 4));
    want[i] = d * static_cast<float>(ls[ib] - 32) * static_cast<float>(kGrid[idx]);
  }
  float out[256];
  ASSERT_TRUE(DequantizeRow(TensorType::kIQ4_XS, x, out, 256).ok());
  for (int i = 0; i < 256; ++i) ASSERT_EQ(out[i], want[i]) << i;

  // IQ4_NL: fp16 d, qs[16]; element j is nibble j / 16 of qs[j % 16], times d.
  uint8_t nl[18];
  PutHalf(nl, -0.25f);
  for (int j = 0; j < 16; ++j) nl[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  float o[32];
  ASSERT_TRUE(DequantizeRow(TensorType::kIQ4_NL, nl, o, 32).ok());
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(o[j], -0.25f * static_cast<float>(kGrid[j])) << j;
    EXPECT_EQ(o[16 + j], -0.25f * static_cast<float>(kGrid[15 - j])) << j;
  }
}

// Reference values are float32 written by Python's json; non-finite ones as strings.
float RefValue(const nlohmann::json& v) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "inf") return INFINITY;
    if (s == "-inf") return -INFINITY;
    return NAN;
  }
  return static_cast<float>(v.get<double>());
}

void ExpectClose(const float* got, const nlohmann::json& want, size_t n, const std::string& what) {
  ASSERT_EQ(want.size(), n) << what;
  for (size_t i = 0; i < n; ++i) {
    const float r = RefValue(want[i]);
    if (std::isnan(r)) {
      EXPECT_TRUE(std::isnan(got[i])) << what << "[" << i << "]";
    } else if (std::isinf(r)) {
      EXPECT_EQ(got[i], r) << what << "[" << i << "]";
    } else {
      // Identical up to the rounding of a fused multiply-add.
      EXPECT_NEAR(got[i], r, 1e-6 * std::max(1.0f, std::fabs(r))) << what << "[" << i << "]";
    }
  }
}

nlohmann::json LoadReference() {
  const std::string path = std::string(SLIM_SOURCE_DIR) + "/tests/fixtures/quant_reference.json";
  std::ifstream in(path);
  if (!in) {
    ADD_FAILURE() << path << " is missing: run scripts/make-quant-fixtures.py";
    return nullptr;
  }
  return nlohmann::json::parse(in);
}

// Bit-exact equality (NaN matches any NaN). The kernels of these types multiply in the order
// ggml and the package do and never fuse a multiply with an add (Q2_K's multiply and subtract
// are separate statements), so every value is the same single-rounded float.
void ExpectBitExact(const float* got, const nlohmann::json& want, size_t n, const std::string& what) {
  ASSERT_EQ(want.size(), n) << what;
  for (size_t i = 0; i < n; ++i) {
    const float r = RefValue(want[i]);
    if (std::isnan(r)) {
      EXPECT_TRUE(std::isnan(got[i])) << what << "[" << i << "]";
    } else {
      EXPECT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(r))
          << what << "[" << i << "]: " << got[i] << " vs " << r;
    }
  }
}

bool IsNewerType(TensorType t) {
  return t == TensorType::kQ2_K || t == TensorType::kQ3_K || t == TensorType::kIQ4_NL ||
         t == TensorType::kIQ4_XS;
}

// Dequantizes one reference entry (raw block bytes as hex) and compares it with the package's
// values; returns how many of ours are non-finite.
int CheckEntry(const nlohmann::json& entry) {
  const auto type = static_cast<TensorType>(entry["type_id"].get<uint32_t>());
  const std::string name = entry["type"].get<std::string>();
  EXPECT_STREQ(TensorTypeName(type), name.c_str());
  const std::string hex = entry["hex"].get<std::string>();
  std::vector<uint8_t> raw(hex.size() / 2);
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  const auto n = entry["n"].get<int64_t>();
  EXPECT_EQ(*TensorBytes(type, static_cast<uint64_t>(n)), raw.size()) << name;
  std::vector<float> out(static_cast<size_t>(n));
  const Status st = DequantizeRow(type, raw.data(), out.data(), n);
  EXPECT_TRUE(st.ok()) << name << ": " << st.ToString();
  if (!st.ok()) return 0;
  if (IsNewerType(type)) {
    ExpectBitExact(out.data(), entry["values"], out.size(), name);
  } else {
    ExpectClose(out.data(), entry["values"], out.size(), name);
  }
  int non_finite = 0;
  for (float v : out) non_finite += std::isfinite(v) ? 0 : 1;
  return non_finite;
}

TEST(DequantizeRow, MatchesPythonGgufOnRandomBlocks) {
  const nlohmann::json ref = LoadReference();
  ASSERT_FALSE(ref.is_null());
  ASSERT_GE(ref["synthetic"].size(), 14u);
  std::set<std::string> types;
  for (const auto& entry : ref["synthetic"]) {
    CheckEntry(entry);
    types.insert(entry["type"].get<std::string>());
  }
  for (const char* t : {"Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS"}) EXPECT_TRUE(types.count(t)) << t;
}

// A NaN or infinite fp16 scale is not an error for DequantizeRow (as in ggml): the block's
// values come out non-finite exactly where the package's do, and the weight loader refuses them.
TEST(DequantizeRow, NonFiniteScalesPropagateAsInGgml) {
  const nlohmann::json ref = LoadReference();
  ASSERT_FALSE(ref.is_null());
  ASSERT_GE(ref["nonfinite_scales"].size(), 5u);
  for (const auto& entry : ref["nonfinite_scales"]) {
    EXPECT_GT(CheckEntry(entry), 0) << entry["type"];
  }
}

using testing::OpenDefaultModel;

TEST(DequantizeRow, MatchesPythonGgufOnDefaultModelRows) {
  const nlohmann::json ref = LoadReference();
  ASSERT_FALSE(ref.is_null());
  std::unique_ptr<GgufFile> g = OpenDefaultModel();
  ASSERT_NE(g, nullptr);
  ASSERT_GE(ref["model_rows"].size(), 6u);
  for (const auto& row : ref["model_rows"]) {
    const std::string name = row["tensor"].get<std::string>();
    const TensorInfo* t = g->FindTensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(TensorTypeName(t->type), row["type"].get<std::string>()) << name;
    const int64_t cols = t->dims[0];
    ASSERT_EQ(cols, row["row_length"].get<int64_t>());
    const size_t row_bytes = *TensorBytes(t->type, static_cast<uint64_t>(cols));
    const auto r = row["row"].get<int64_t>();
    std::vector<float> out(static_cast<size_t>(cols));
    ASSERT_TRUE(DequantizeRow(t->type, t->data + static_cast<size_t>(r) * row_bytes, out.data(), cols).ok());
    ExpectClose(out.data(), row["values"], row["values"].size(), name + " row " + std::to_string(r));
  }
}

// Every tensor of the default model dequantizes (the load path) to finite values.
TEST(DequantizeRow, WholeDefaultModelIsFinite) {
  std::unique_ptr<GgufFile> g = OpenDefaultModel();
  ASSERT_NE(g, nullptr);
  std::vector<float> buf;
  double sum_abs = 0;
  for (const TensorInfo& t : g->tensors()) {
    ASSERT_TRUE(CanDequantize(t.type)) << t.name;
    buf.resize(t.n_elements);
    ASSERT_TRUE(DequantizeRow(t.type, t.data, buf.data(), static_cast<int64_t>(t.n_elements)).ok()) << t.name;
    for (float v : buf) {
      ASSERT_TRUE(std::isfinite(v)) << t.name;
      sum_abs += std::fabs(v);
    }
  }
  EXPECT_GT(sum_abs, 0.0);
}

}  // namespace
}  // namespace slim::gguf
