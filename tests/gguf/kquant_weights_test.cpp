// Q2_K, Q3_K, IQ4_NL and IQ4_XS tensors through the load path (GGUF file -> OpenGgufWeights ->
// ReadF32): values equal the Python gguf package's dequantization of the same blocks
// (tests/fixtures/quant_reference.json), a non-finite scale and a partial super-block are
// refused naming the tensor.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/gguf/quant.h"
#include "engine/model/weight_source.h"
#include "tests/gguf/gguf_builder.h"

namespace slim {
namespace {

using gguf::TensorType;
using gguf::testing::GgufBuilder;
using gguf::testing::TinyLlama;

struct RefBlocks {
  TensorType type;
  std::vector<uint8_t> raw;
  std::vector<float> values;  // NaN for the package's non-finite values
};

// The reference entries of `section` whose type is `name`.
std::vector<RefBlocks> Reference(const std::string& section, const std::string& name) {
  std::ifstream in(std::string(SLIM_SOURCE_DIR) + "/tests/fixtures/quant_reference.json");
  EXPECT_TRUE(in) << "tests/fixtures/quant_reference.json is missing: run scripts/make-quant-fixtures.py";
  if (!in) return {};
  const nlohmann::json ref = nlohmann::json::parse(in);
  std::vector<RefBlocks> out;
  for (const auto& e : ref[section]) {
    if (e["type"].get<std::string>() != name) continue;
    RefBlocks r;
    r.type = static_cast<TensorType>(e["type_id"].get<uint32_t>());
    const std::string hex = e["hex"].get<std::string>();
    for (size_t i = 0; i + 1 < hex.size(); i += 2) {
      r.raw.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    for (const auto& v : e["values"]) r.values.push_back(v.is_string() ? NAN : static_cast<float>(v.get<double>()));
    out.push_back(std::move(r));
  }
  return out;
}

// Writes `b` to a temporary file, removed when this goes out of scope.
class TempGguf {
 public:
  explicit TempGguf(const GgufBuilder& b, const std::string& tag)
      : path_((std::filesystem::temp_directory_path() /
               ("kquant_weights_" + tag + "_" + std::to_string(::getpid()) + ".gguf")).string()) {
    const std::vector<uint8_t> bytes = b.Build();
    std::ofstream out(path_, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  ~TempGguf() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(KQuantWeights, ReadF32MatchesPythonGguf) {
  for (const char* name : {"Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS"}) {
    SCOPED_TRACE(name);
    const std::vector<RefBlocks> refs = Reference("synthetic", name);
    ASSERT_EQ(refs.size(), 1u);
    const RefBlocks& r = refs[0];
    // Two rows of one block each (IQ4_NL: one row of two 32-element blocks would also do).
    const int64_t cols = gguf::BlockElements(r.type), rows = static_cast<int64_t>(r.values.size()) / cols;
    ASSERT_EQ(rows, 2);
    GgufBuilder b = TinyLlama();
    b.Tensor("blk.0.ffn_down.weight", {cols, rows}, r.type, r.raw);
    TempGguf file(b, name);
    auto src = OpenGgufWeights(file.path());
    ASSERT_TRUE(src.ok()) << src.status().ToString();
    std::vector<float> out(r.values.size());
    const Status st = (*src)->ReadF32("blk.0.ffn_down.weight", rows, cols, out.data());
    ASSERT_TRUE(st.ok()) << st.ToString();
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(out[i]), std::bit_cast<uint32_t>(r.values[i])) << i;
    }
  }
}

TEST(KQuantWeights, NonFiniteScaleIsRefusedNamingTheTensor) {
  for (const char* name : {"Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS"}) {
    SCOPED_TRACE(name);
    const std::vector<RefBlocks> refs = Reference("nonfinite_scales", name);
    ASSERT_GE(refs.size(), 1u);
    for (const RefBlocks& r : refs) {
      const int64_t cols = gguf::BlockElements(r.type), rows = static_cast<int64_t>(r.values.size()) / cols;
      GgufBuilder b = TinyLlama();
      b.Tensor("blk.1.attn_v.weight", {cols, rows}, r.type, r.raw);
      TempGguf file(b, name);
      auto src = OpenGgufWeights(file.path());
      ASSERT_TRUE(src.ok()) << src.status().ToString();
      std::vector<float> out(r.values.size());
      const Status st = (*src)->ReadF32("blk.1.attn_v.weight", rows, cols, out.data());
      EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
      EXPECT_NE(st.message().find("'blk.1.attn_v.weight'"), std::string::npos) << st.message();
      EXPECT_NE(st.message().find("non-finite"), std::string::npos) << st.message();
      EXPECT_NE(st.message().find(file.path()), std::string::npos) << st.message();
    }
  }
}

// A row of 128 elements cannot hold a 256-element super-block: the file is refused at open.
TEST(KQuantWeights, PartialSuperBlockRowIsRefusedAtOpen) {
  for (TensorType t : {TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kIQ4_XS}) {
    SCOPED_TRACE(gguf::TensorTypeName(t));
    GgufBuilder b = TinyLlama();
    b.Tensor("blk.0.attn_q.weight", {128, 2}, t);
    TempGguf file(b, gguf::TensorTypeName(t));
    auto src = OpenGgufWeights(file.path());
    ASSERT_FALSE(src.ok());
    const Status st = src.status();
    const std::string& m = st.message();
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << m;
    EXPECT_NE(m.find("blk.0.attn_q.weight"), std::string::npos) << m;
    EXPECT_NE(m.find(gguf::TensorTypeName(t)), std::string::npos) << m;
    EXPECT_NE(m.find("row length 128"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace slim
