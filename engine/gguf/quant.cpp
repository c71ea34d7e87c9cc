// ggml tensor type table (names, block sizes) and scalar dequantization kernels to fp32, written
// to match ggml-quants.c bit for bit (block layouts as ggml-common.h defines them). Blocks are read with memcpy (GGUF data is only byte-aligned
// within a tensor), and the inner loops have fixed trip counts so the compiler vectorizes them.
#include "engine/gguf/quant.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <string>

namespace slim::gguf {
namespace {

constexpr int64_t QK = 32;    // elements per block of the legacy quants
constexpr int64_t QK_K = 256;  // elements per super-block of the K-quants

struct Traits {
  const char* name;
  int64_t block_elements;
  size_t block_bytes;
  bool dequantize;  // DequantizeRow supports it
};

Traits TraitsOf(TensorType t) {
  switch (t) {
    case TensorType::kF32: return {"F32", 1, 4, true};
    case TensorType::kF16: return {"F16", 1, 2, true};
    case TensorType::kBF16: return {"BF16", 1, 2, true};
    case TensorType::kQ4_0: return {"Q4_0", QK, 2 + 16, true};
    case TensorType::kQ4_1: return {"Q4_1", QK, 2 + 2 + 16, true};
    case TensorType::kQ5_0: return {"Q5_0", QK, 2 + 4 + 16, true};
    case TensorType::kQ5_1: return {"Q5_1", QK, 2 + 2 + 4 + 16, true};
    case TensorType::kQ8_0: return {"Q8_0", QK, 2 + 32, true};
    case TensorType::kQ8_1: return {"Q8_1", QK, 2 + 2 + 32, false};
    case TensorType::kQ2_K: return {"Q2_K", QK_K, 16 + 64 + 2 + 2, true};
    case TensorType::kQ3_K: return {"Q3_K", QK_K, 32 + 64 + 12 + 2, true};
    case TensorType::kQ4_K: return {"Q4_K", QK_K, 2 + 2 + 12 + 128, true};
    case TensorType::kQ5_K: return {"Q5_K", QK_K, 2 + 2 + 12 + 32 + 128, true};
    case TensorType::kQ6_K: return {"Q6_K", QK_K, 128 + 64 + 16 + 2, true};
    case TensorType::kQ8_K: return {"Q8_K", QK_K, 4 + 256 + 32, false};
    case TensorType::kIQ4_NL: return {"IQ4_NL", QK, 2 + 16, true};
    case TensorType::kIQ4_XS: return {"IQ4_XS", QK_K, 2 + 2 + 4 + 128, true};
  }
  return {"unknown", 0, 0, false};
}

inline uint32_t Bits(float f) { return std::bit_cast<uint32_t>(f); }
inline float FromBits(uint32_t u) { return std::bit_cast<float>(u); }

// IEEE half -> single, branch-free (Maratyszcza's FP16 library): exact for normals, subnormals,
// zeros, infinities and NaNs.
inline float HalfToFloat(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  // Normal (and inf/nan): shift exponent+mantissa into place, rebias by 2^-112.
  const float normalized = FromBits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  // Subnormal: put the mantissa under a 0.5 exponent and subtract 0.5.
  const float denormalized = FromBits((two_w >> 17) | (126u << 23)) - 0.5f;
  // Select with a mask rather than ?: so loops over halves stay branch-free and vectorize.
  const uint32_t subnormal = 0u - static_cast<uint32_t>(two_w < (1u << 27));
  const uint32_t result = sign | (Bits(denormalized) & subnormal) | (Bits(normalized) & ~subnormal);
  return FromBits(result);
}

inline float LoadHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return HalfToFloat(h);
}

void DequantF32(const uint8_t* __restrict src, float* __restrict dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void DequantF16(const uint8_t* __restrict src, float* __restrict dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = HalfToFloat(h);
  }
}

void DequantBF16(const uint8_t* __restrict src, float* __restrict dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, src + 2 * i, 2);
    dst[i] = FromBits(static_cast<uint32_t>(b) << 16);
  }
}

// block_q4_0: fp16 d; uint8 qs[16]. x[j] = ((qs[j] & 15) - 8) * d, x[j+16] = ((qs[j] >> 4) - 8) * d.
void DequantQ4_0(const uint8_t* __restrict src, float* __restrict dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 18, dst += QK) {
    const float d = LoadHalf(src);
    const uint8_t* __restrict qs = src + 2;
    for (int j = 0; j < 16; ++j) dst[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
    for (int j = 0; j < 16; ++j) dst[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

// block_q4_1: fp16 d, m; uint8 qs[16]. x = q * d + m, same nibble order as Q4_0.
void DequantQ4_1(const uint8_t* __restrict src, float* __restrict dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 20, dst += QK) {
    const float d = LoadHalf(src);
    const float m = LoadHalf(src + 2);
    const uint8_t* __restrict qs = src + 4;
    for (int j = 0; j < 16; ++j) dst[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
    for (int j = 0; j < 16; ++j) dst[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

// block_q5_0: fp16 d; uint8 qh[4] (bit j = high bit of element j); uint8 qs[16].
void DequantQ5_0(const uint8_t* __restrict src, float* __restrict dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 22, dst += QK) {
    const float d = LoadHalf(src);
    uint32_t qh;
    std::memcpy(&qh, src + 2, 4);
    const uint8_t* qs = src + 6;
    for (int j = 0; j < 16; ++j) {
      const int xh0 = static_cast<int>(((qh >> j) << 4) & 0x10);
      const int xh1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      dst[j] = static_cast<float>(((qs[j] & 0x0F) | xh0) - 16) * d;
      dst[j + 16] = static_cast<float>(((qs[j] >> 4) | xh1) - 16) * d;
    }
  }
}

// block_q5_1: fp16 d, m; uint8 qh[4]; uint8 qs[16]. x = q * d + m.
void DequantQ5_1(const uint8_t* __restrict src, float* __restrict dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 24, dst += QK) {
    const float d = LoadHalf(src);
    const float m = LoadHalf(src + 2);
    uint32_t qh;
    std::memcpy(&qh, src + 4, 4);
    const uint8_t* qs = src + 8;
    for (int j = 0; j < 16; ++j) {
      const int xh0 = static_cast<int>(((qh >> j) << 4) & 0x10);
      const int xh1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      dst[j] = static_cast<float>((qs[j] & 0x0F) | xh0) * d + m;
      dst[j + 16] = static_cast<float>((qs[j] >> 4) | xh1) * d + m;
    }
  }
}

// block_q8_0: fp16 d; int8 qs[32]. x = q * d.
void DequantQ8_0(const uint8_t* __restrict src, float* __restrict dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 34, dst += QK) {
    const float d = LoadHalf(src);
    const auto* __restrict qs = reinterpret_cast<const int8_t*>(src + 2);
    for (int j = 0; j < 32; ++j) dst[j] = static_cast<float>(qs[j]) * d;
  }
}

// 6-bit scale and min j (0..7) of a Q4_K/Q5_K super-block, packed into 12 bytes.
inline void ScaleMinK4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// block_q4_K: fp16 d, dmin; uint8 scales[12]; uint8 qs[128]. Eight sub-blocks of 32, each
// x = d * sc * q - dmin * m; sub-blocks 2i and 2i+1 share qs[32i..32i+31] (low, high nibbles).
void DequantQ4_K(const uint8_t* __restrict src, float* __restrict dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 144) {
    const float d = LoadHalf(src);
    const float dmin = LoadHalf(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* q = src + 16;
    for (int is = 0; is < 8; is += 2, q += 32) {
      uint8_t sc, m;
      ScaleMinK4(is, scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      ScaleMinK4(is + 1, scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *dst++ = d1 * static_cast<float>(q[l] & 0x0F) - m1;
      for (int l = 0; l < 32; ++l) *dst++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

// block_q5_K: fp16 d, dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]. As Q4_K with a
// fifth bit per element from qh (bit 2i for the low-nibble sub-block, 2i+1 for the high one).
void DequantQ5_K(const uint8_t* __restrict src, float* __restrict dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 176) {
    const float d = LoadHalf(src);
    const float dmin = LoadHalf(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* qh = src + 16;
    const uint8_t* ql = src + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32) {
      uint8_t sc, m;
      ScaleMinK4(is, scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      ScaleMinK4(is + 1, scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) {
        *dst++ = d1 * static_cast<float>((ql[l] & 0x0F) + ((qh[l] & u1) ? 16 : 0)) - m1;
      }
      for (int l = 0; l < 32; ++l) {
        *dst++ = d2 * static_cast<float>((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
      }
      u1 = static_cast<uint8_t>(u1 << 2);
      u2 = static_cast<uint8_t>(u2 << 2);
    }
  }
}

// block_q6_K: uint8 ql[128]; uint8 qh[64]; int8 scales[16]; fp16 d. x = d * scale * (q - 32).
void DequantQ6_K(const uint8_t* __restrict src, float* __restrict dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 210) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const auto* sc = reinterpret_cast<const int8_t*>(src + 192);
    const float d = LoadHalf(src + 208);
    // Each half of 128 elements: 4 groups of 32; element l of group g is the (g & 2 ? high : low)
    // nibble of ql[(g & 1 ? 32 : 0) + l] plus bits 2g..2g+1 of qh[l], scaled by sc[2g + l / 16].
    for (int n = 0; n < 2; ++n, dst += 128, ql += 64, qh += 32, sc += 8) {
      for (int g = 0; g < 4; ++g) {
        const uint8_t* lo = ql + (g & 1) * 32;
        const int shift = (g & 2) ? 4 : 0;
        for (int h = 0; h < 2; ++h) {
          const float dl = d * static_cast<float>(sc[2 * g + h]);
          float* y = dst + 32 * g + 16 * h;
          for (int l = 0; l < 16; ++l) {
            const int j = 16 * h + l;
            const int q = ((lo[j] >> shift) & 0x0F) | (((qh[j] >> (2 * g)) & 3) << 4);
            y[l] = dl * static_cast<float>(q - 32);
          }
        }
      }
    }
  }
}

// block_q2_K: uint8 scales[16]; uint8 qs[64]; fp16 d, dmin. Sixteen sub-blocks of 16, each
// x = (d * (scale & 15)) * q - dmin * (scale >> 4) with a 2-bit q. Each half of 128 elements
// reads qs[32h..32h+31]: element 32s + l of the half is bits 2s..2s+1 of that half's qs[l].
void DequantQ2_K(const uint8_t* __restrict src, float* __restrict dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 84) {
    const uint8_t* scales = src;
    const uint8_t* q = src + 16;
    const float d = LoadHalf(src + 80);
    const float dmin = LoadHalf(src + 82);
    for (int h = 0; h < 2; ++h, q += 32) {
      for (int s = 0; s < 4; ++s) {
        for (int k = 0; k < 2; ++k) {  // the two sub-blocks of 16 sharing this shift
          const uint8_t sc = *scales++;
          const float dl = d * static_cast<float>(sc & 0x0F);
          const float ml = dmin * static_cast<float>(sc >> 4);
          for (int l = 0; l < 16; ++l) {
            // Two statements: no contraction into an FMA, so results round as ggml's do.
            const float p = dl * static_cast<float>((q[16 * k + l] >> (2 * s)) & 3);
            *dst++ = p - ml;
          }
        }
      }
    }
  }
}

// Signed 6-bit scale j (0..15) of a Q3_K super-block: low 4 bits in the nibbles of bytes 0..7
// (low nibbles for j < 8, high for j >= 8), high 2 bits in bytes 8..11 (byte 8 + j % 4, bits
// 2 (j / 4)); stored with an offset of 32.
inline int ScaleK3(int j, const uint8_t* s) {
  const int lo = j < 8 ? (s[j] & 0x0F) : (s[j - 8] >> 4);
  const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}

// block_q3_K: uint8 hmask[32]; uint8 qs[64]; uint8 scales[12]; fp16 d. Sixteen sub-blocks of
// 16, x = (d * scale) * q with q = low2 - (high bit set ? 0 : 4) in -4..3. low2 is laid out as
// in Q2_K; the high bit of element i is bit i / 32 of hmask[i % 32].
void DequantQ3_K(const uint8_t* __restrict src, float* __restrict dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 110) {
    const uint8_t* hmask = src;
    const uint8_t* q = src + 32;
    const uint8_t* scales = src + 96;
    const float d = LoadHalf(src + 108);
    int is = 0;
    for (int h = 0; h < 2; ++h, q += 32) {
      for (int s = 0; s < 4; ++s) {
        const int bit = 4 * h + s;  // element index / 32
        for (int k = 0; k < 2; ++k) {
          const float dl = d * static_cast<float>(ScaleK3(is++, scales));
          for (int l = 0; l < 16; ++l) {
            const int j = 16 * k + l;
            const int low = (q[j] >> (2 * s)) & 3;
            const int high = ((hmask[j] >> bit) & 1) ? 0 : 4;
            *dst++ = dl * static_cast<float>(low - high);
          }
        }
      }
    }
  }
}

// The non-linear 4-bit grid of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl).
constexpr int8_t kIq4Grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// block_iq4_nl: fp16 d; uint8 qs[16]. x[j] = d * grid[qs[j] & 15], x[j+16] = d * grid[qs[j] >> 4].
void DequantIQ4_NL(const uint8_t* __restrict src, float* __restrict dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 18, dst += QK) {
    const float d = LoadHalf(src);
    const uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) dst[j] = d * static_cast<float>(kIq4Grid[qs[j] & 0x0F]);
    for (int j = 0; j < 16; ++j) dst[j + 16] = d * static_cast<float>(kIq4Grid[qs[j] >> 4]);
  }
}

// block_iq4_xs: fp16 d; uint16 scales_h; uint8 scales_l[4]; uint8 qs[128]. Eight sub-blocks of
// 32, each an IQ4_NL block with scale d * (ls - 32), ls 6 bits: low 4 from nibble ib % 2 of
// scales_l[ib / 2], high 2 from bits 2 ib of scales_h.
void DequantIQ4_XS(const uint8_t* __restrict src, float* __restrict dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 136) {
    const float d = LoadHalf(src);
    uint16_t scales_h;
    std::memcpy(&scales_h, src + 2, 2);
    const uint8_t* scales_l = src + 4;
    const uint8_t* qs = src + 8;
    for (int ib = 0; ib < 8; ++ib, qs += 16, dst += 32) {
      const int ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F) | (((scales_h >> (2 * ib)) & 3) << 4);
      const float dl = d * static_cast<float>(ls - 32);
      for (int j = 0; j < 16; ++j) dst[j] = dl * static_cast<float>(kIq4Grid[qs[j] & 0x0F]);
      for (int j = 0; j < 16; ++j) dst[j + 16] = dl * static_cast<float>(kIq4Grid[qs[j] >> 4]);
    }
  }
}

}  // namespace

const char* TensorTypeName(TensorType t) { return TraitsOf(t).name; }
int64_t BlockElements(TensorType t) { return TraitsOf(t).block_elements; }
size_t BlockBytes(TensorType t) { return TraitsOf(t).block_bytes; }
bool CanDequantize(TensorType t) { return TraitsOf(t).dequantize; }

StatusOr<uint64_t> TensorBytes(TensorType t, uint64_t n_elements) {
  const Traits tr = TraitsOf(t);
  if (tr.block_elements == 0) {
    return InvalidArgumentError("unknown tensor type " + std::to_string(static_cast<uint32_t>(t)));
  }
  const auto block = static_cast<uint64_t>(tr.block_elements);
  if (n_elements % block != 0) {
    return InvalidArgumentError(std::to_string(n_elements) + " elements of type " + tr.name +
                                " are not a multiple of its block size " + std::to_string(block));
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(n_elements / block, static_cast<uint64_t>(tr.block_bytes), &bytes)) {
    return InvalidArgumentError("byte size of " + std::to_string(n_elements) + " elements of type " +
                                tr.name + " overflows");
  }
  return bytes;
}

Status DequantizeRow(TensorType t, const void* src, float* dst, int64_t n) {
  const Traits tr = TraitsOf(t);
  if (tr.block_elements == 0) {
    return InvalidArgumentError("cannot dequantize unknown tensor type " +
                                std::to_string(static_cast<uint32_t>(t)));
  }
  if (!tr.dequantize) {
    return UnimplementedError(std::string("dequantization of ") + tr.name + " is not implemented");
  }
  if (n < 0 || n % tr.block_elements != 0) {
    return InvalidArgumentError("cannot dequantize " + std::to_string(n) + " elements of type " +
                                tr.name + ": not a non-negative multiple of its block size " +
                                std::to_string(tr.block_elements));
  }
  if (n == 0) return OkStatus();
  if (src == nullptr || dst == nullptr) return InvalidArgumentError("DequantizeRow: null pointer");
  const auto* s = static_cast<const uint8_t*>(src);
  const int64_t nb = n / tr.block_elements;
  switch (t) {
    case TensorType::kF32: DequantF32(s, dst, n); break;
    case TensorType::kF16: DequantF16(s, dst, n); break;
    case TensorType::kBF16: DequantBF16(s, dst, n); break;
    case TensorType::kQ4_0: DequantQ4_0(s, dst, nb); break;
    case TensorType::kQ4_1: DequantQ4_1(s, dst, nb); break;
    case TensorType::kQ5_0: DequantQ5_0(s, dst, nb); break;
    case TensorType::kQ5_1: DequantQ5_1(s, dst, nb); break;
    case TensorType::kQ8_0: DequantQ8_0(s, dst, nb); break;
    case TensorType::kQ4_K: DequantQ4_K(s, dst, nb); break;
    case TensorType::kQ5_K: DequantQ5_K(s, dst, nb); break;
    case TensorType::kQ6_K: DequantQ6_K(s, dst, nb); break;
    case TensorType::kQ2_K: DequantQ2_K(s, dst, nb); break;
    case TensorType::kQ3_K: DequantQ3_K(s, dst, nb); break;
    case TensorType::kIQ4_NL: DequantIQ4_NL(s, dst, nb); break;
    case TensorType::kIQ4_XS: DequantIQ4_XS(s, dst, nb); break;
    default:
      return UnimplementedError(std::string("dequantization of ") + tr.name + " is not implemented");
  }
  return OkStatus();
}

float Fp16ToFp32(uint16_t h) { return HalfToFloat(h); }

// IEEE single -> half, round to nearest even; overflow gives inf, NaN stays a (quiet) NaN.
// Branch-free form from Maratyszcza's FP16 library: the float additions do the rounding.
uint16_t Fp32ToFp16(float f) {
  float base = (std::abs(f) * 0x1.0p+112f) * 0x1.0p-110f;
  const uint32_t w = Bits(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = FromBits((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = Bits(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

float Bf16ToFp32(uint16_t b) { return FromBits(static_cast<uint32_t>(b) << 16); }

uint16_t Fp32ToBf16(float f) {
  const uint32_t u = Bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
    return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN: keep sign and payload top, quiet
  }
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace slim::gguf
