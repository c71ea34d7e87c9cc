// Every quantized type DequantizeRow supports, bit for bit against ggml's own C code
// (dequantize_row_* and quantize_* of ggml-quants.c, compiled from the llama.cpp sources by
// scripts/check-quants-ggml.sh and linked in here):
//  * random blocks whose first fp16 scale runs through all 65536 bit patterns (subnormals,
//    infinities and NaNs included: both must give NaN at the same places);
//  * ggml's quantizers run over real weights (the first 64 rows of every 2D tensor of a GGUF
//    whose row length fits the type), then both dequantize the result.
// Prints one line per check and closes with "N passed, N failed"; exit status 1 on any failure.
// Single-threaded command-line tool.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "engine/gguf/gguf_file.h"
#include "engine/gguf/quant.h"

using slim::gguf::BlockBytes;
using slim::gguf::BlockElements;
using slim::gguf::TensorType;

// ggml-quants.c's entry points (ggml types are ABI-compatible with these void pointers), and the
// few ggml.c helpers it calls, answered from our own type table (same numbering as ggml.h).
extern "C" {
#define SLIM_GGML_PAIR(t)                                   \
  void dequantize_row_##t(const void*, float*, int64_t); \
  size_t quantize_##t(const float*, void*, int64_t, int64_t, const float*);
SLIM_GGML_PAIR(q4_0) SLIM_GGML_PAIR(q4_1) SLIM_GGML_PAIR(q5_0) SLIM_GGML_PAIR(q5_1) SLIM_GGML_PAIR(q8_0)
SLIM_GGML_PAIR(q2_K) SLIM_GGML_PAIR(q3_K) SLIM_GGML_PAIR(q4_K) SLIM_GGML_PAIR(q5_K) SLIM_GGML_PAIR(q6_K)
SLIM_GGML_PAIR(iq4_nl) SLIM_GGML_PAIR(iq4_xs)
#undef SLIM_GGML_PAIR

size_t ggml_row_size(int type, int64_t ne) {
  const auto t = static_cast<TensorType>(type);
  return static_cast<size_t>(ne / BlockElements(t)) * BlockBytes(t);
}
size_t ggml_type_size(int type) { return BlockBytes(static_cast<TensorType>(type)); }
const char* ggml_type_name(int type) { return slim::gguf::TensorTypeName(static_cast<TensorType>(type)); }
void ggml_abort(const char* file, int line, const char* /*fmt*/, ...) {
  std::fprintf(stderr, "ggml_abort at %s:%d\n", file, line);
  std::abort();
}
void ggml_log_internal(int, const char*, ...) {}
}

namespace {

struct Type {
  TensorType t;
  void (*dequantize)(const void*, float*, int64_t);
  size_t (*quantize)(const float*, void*, int64_t, int64_t, const float*);
  std::vector<int> scale_offsets;  // fp16 scales inside a block; the first is swept
};

const Type kTypes[] = {
    {TensorType::kQ4_0, dequantize_row_q4_0, quantize_q4_0, {0}},
    {TensorType::kQ4_1, dequantize_row_q4_1, quantize_q4_1, {0, 2}},
    {TensorType::kQ5_0, dequantize_row_q5_0, quantize_q5_0, {0}},
    {TensorType::kQ5_1, dequantize_row_q5_1, quantize_q5_1, {0, 2}},
    {TensorType::kQ8_0, dequantize_row_q8_0, quantize_q8_0, {0}},
    {TensorType::kQ2_K, dequantize_row_q2_K, quantize_q2_K, {80, 82}},
    {TensorType::kQ3_K, dequantize_row_q3_K, quantize_q3_K, {108}},
    {TensorType::kQ4_K, dequantize_row_q4_K, quantize_q4_K, {0, 2}},
    {TensorType::kQ5_K, dequantize_row_q5_K, quantize_q5_K, {0, 2}},
    {TensorType::kQ6_K, dequantize_row_q6_K, quantize_q6_K, {208}},
    {TensorType::kIQ4_NL, dequantize_row_iq4_nl, quantize_iq4_nl, {0}},
    {TensorType::kIQ4_XS, dequantize_row_iq4_xs, quantize_iq4_xs, {0}},
};

struct Result {
  long values = 0, mismatches = 0, non_finite = 0;
};

// Dequantizes `raw` (n elements) with ggml and with DequantizeRow.
Result Compare(const Type& t, const std::vector<uint8_t>& raw, int64_t n) {
  std::vector<float> ggml(static_cast<size_t>(n)), ours(static_cast<size_t>(n));
  t.dequantize(raw.data(), ggml.data(), n);
  Result r;
  r.values = n;
  if (!slim::gguf::DequantizeRow(t.t, raw.data(), ours.data(), n).ok()) {
    r.mismatches = n;
    return r;
  }
  for (size_t i = 0; i < ggml.size(); ++i) {
    if (!std::isfinite(ggml[i])) ++r.non_finite;
    const bool same = std::isnan(ggml[i]) ? std::isnan(ours[i])
                                          : std::bit_cast<uint32_t>(ggml[i]) == std::bit_cast<uint32_t>(ours[i]);
    r.mismatches += same ? 0 : 1;
  }
  return r;
}

Result RandomBlocks(const Type& t, std::mt19937_64& rng) {
  const size_t bb = BlockBytes(t.t);
  constexpr int64_t kBlocks = 65536;
  std::vector<uint8_t> raw(static_cast<size_t>(kBlocks) * bb);
  for (auto& c : raw) c = static_cast<uint8_t>(rng());
  for (int64_t b = 0; b < kBlocks; ++b) {
    for (size_t k = 0; k < t.scale_offsets.size(); ++k) {
      // The first scale sweeps every half; the others stay finite.
      const auto h = static_cast<uint16_t>(k == 0 ? b : (rng() & 0x7BFF));
      std::memcpy(&raw[static_cast<size_t>(b) * bb + static_cast<size_t>(t.scale_offsets[k])], &h, 2);
    }
  }
  return Compare(t, raw, kBlocks * BlockElements(t.t));
}

// ggml's quantizer over the first 64 rows of every fitting 2D tensor of `f`.
Result GgmlQuantized(const Type& t, const slim::gguf::GgufFile& f, int* tensors) {
  Result total;
  for (const slim::gguf::TensorInfo& ti : f.tensors()) {
    if (ti.dims.size() != 2 || ti.dims[0] % BlockElements(t.t) != 0) continue;
    const int64_t cols = ti.dims[0], rows = std::min<int64_t>(ti.dims[1], 64);
    std::vector<float> x(static_cast<size_t>(rows * cols));
    if (!slim::gguf::DequantizeRow(ti.type, ti.data, x.data(), rows * cols).ok()) continue;
    std::vector<uint8_t> q(static_cast<size_t>(rows * cols / BlockElements(t.t)) * BlockBytes(t.t));
    t.quantize(x.data(), q.data(), rows, cols, nullptr);
    const Result r = Compare(t, q, rows * cols);
    total.values += r.values;
    total.mismatches += r.mismatches;
    total.non_finite += r.non_finite;
    ++*tensors;
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
    return 2;
  }
  auto f = slim::gguf::GgufFile::Open(argv[1]);
  if (!f.ok()) {
    std::fprintf(stderr, "%s\n", f.status().ToString().c_str());
    return 2;
  }
  std::mt19937_64 rng(20261202);
  int passed = 0, failed = 0;
  for (const Type& t : kTypes) {
    const char* name = slim::gguf::TensorTypeName(t.t);
    const Result r = RandomBlocks(t, rng);
    std::printf("%-6s random blocks, every fp16 scale: %ld values, %ld mismatches (%ld non-finite in ggml)\n", name,
                r.values, r.mismatches, r.non_finite);
    // Some blocks must have come out non-finite, or the sweep did not reach the NaN scales.
    (r.mismatches == 0 && r.non_finite > 0 ? passed : failed)++;
    int tensors = 0;
    const Result q = GgmlQuantized(t, **f, &tensors);
    std::printf("%-6s ggml-quantized rows of %d tensors: %ld values, %ld mismatches\n", name, tensors, q.values,
                q.mismatches);
    (q.mismatches == 0 && q.values > 0 && q.non_finite == 0 ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
