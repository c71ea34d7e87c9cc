// GgufFile: every metadata value type in v2 and v3, getters' conversions, alignment and tensor
// layout, truncation at every byte, Open() over mmap, and the real default model's structure.
#include "engine/gguf/gguf_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include "engine/gguf/quant.h"
#include "tests/gguf/default_model.h"
#include "tests/gguf/gguf_builder.h"

namespace slim::gguf {
namespace {

using testing::GgufBuilder;

StatusOr<std::unique_ptr<GgufFile>> Parse(const std::vector<uint8_t>& bytes) {
  return GgufFile::FromBuffer(bytes, "mem.gguf");
}

// Every value type, including nested arrays, with values at the edges of their ranges.
GgufBuilder AllTypes() {
  GgufBuilder b;
  b.Kv("t.u8", ValueType::kUint8, GgufBuilder::Scalar<uint8_t>(250))
      .Kv("t.i8", ValueType::kInt8, GgufBuilder::Scalar<int8_t>(-128))
      .Kv("t.u16", ValueType::kUint16, GgufBuilder::Scalar<uint16_t>(65535))
      .Kv("t.i16", ValueType::kInt16, GgufBuilder::Scalar<int16_t>(-32768))
      .Kv("t.u32", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(4000000000u))
      .Kv("t.i32", ValueType::kInt32, GgufBuilder::Scalar<int32_t>(-2000000000))
      .Kv("t.f32", ValueType::kFloat32, GgufBuilder::Scalar<float>(0.15625f))
      .Kv("t.bool", ValueType::kBool, GgufBuilder::Scalar<uint8_t>(1))
      .Kv("t.str", ValueType::kString, GgufBuilder::String("h\xC3\xA9llo"))
      .Kv("t.u64", ValueType::kUint64, GgufBuilder::Scalar<uint64_t>(18446744073709551615ull))
      .Kv("t.i64", ValueType::kInt64, GgufBuilder::Scalar<int64_t>(std::numeric_limits<int64_t>::min()))
      .Kv("t.f64", ValueType::kFloat64, GgufBuilder::Scalar<double>(-1e300))
      .Kv("t.empty_str", ValueType::kString, GgufBuilder::String(""))
      .Kv("t.arr_i16", ValueType::kArray,
          GgufBuilder::Array(ValueType::kInt16, {GgufBuilder::Scalar<int16_t>(1), GgufBuilder::Scalar<int16_t>(-2)}))
      .Kv("t.arr_u64", ValueType::kArray,
          GgufBuilder::Array(ValueType::kUint64, {GgufBuilder::Scalar<uint64_t>(1ull << 63)}))
      .Kv("t.arr_f32", ValueType::kArray,
          GgufBuilder::Array(ValueType::kFloat32, {GgufBuilder::Scalar<float>(0.5f), GgufBuilder::Scalar<float>(-2.0f)}))
      .Kv("t.arr_str", ValueType::kArray, GgufBuilder::StringArray({"a", "", "bc"}))
      .Kv("t.arr_bool", ValueType::kArray,
          GgufBuilder::Array(ValueType::kBool, {GgufBuilder::Scalar<uint8_t>(0), GgufBuilder::Scalar<uint8_t>(1)}))
      .Kv("t.arr_empty", ValueType::kArray, GgufBuilder::Array(ValueType::kUint32, {}))
      .Kv("t.nested", ValueType::kArray,
          GgufBuilder::Array(ValueType::kArray,
                             {GgufBuilder::Array(ValueType::kUint8, {GgufBuilder::Scalar<uint8_t>(7)}),
                              GgufBuilder::StringArray({"x", "y"})}));
  return b;
}

class VersionTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(VersionTest, ParsesEveryValueType) {
  auto f = Parse(AllTypes().Build(GetParam()));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), GetParam());
  ASSERT_EQ(g.metadata().size(), 20u);
  EXPECT_EQ(g.metadata()[0].first, "t.u8");  // file order kept
  EXPECT_EQ(g.metadata()[19].first, "t.nested");

  EXPECT_EQ(g.Find("t.u8")->type, ValueType::kUint8);
  EXPECT_EQ(*g.GetUint("t.u8"), 250u);
  EXPECT_EQ(*g.GetInt("t.i8"), -128);
  EXPECT_EQ(*g.GetUint("t.u16"), 65535u);
  EXPECT_EQ(*g.GetInt("t.i16"), -32768);
  EXPECT_EQ(*g.GetUint("t.u32"), 4000000000u);
  EXPECT_EQ(*g.GetInt("t.i32"), -2000000000);
  EXPECT_EQ(g.Find("t.f32")->type, ValueType::kFloat32);
  EXPECT_EQ(*g.GetFloat("t.f32"), 0.15625);
  EXPECT_TRUE(*g.GetBool("t.bool"));
  EXPECT_EQ(*g.GetString("t.str"), "h\xC3\xA9llo");
  EXPECT_EQ(*g.GetUint("t.u64"), 18446744073709551615ull);
  EXPECT_EQ(*g.GetInt("t.i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(*g.GetFloat("t.f64"), -1e300);
  EXPECT_EQ(*g.GetString("t.empty_str"), "");
  EXPECT_EQ(*g.GetIntArray("t.arr_i16"), (std::vector<int64_t>{1, -2}));
  EXPECT_EQ(*g.GetFloatArray("t.arr_f32"), (std::vector<double>{0.5, -2.0}));
  EXPECT_EQ(*g.GetStringArray("t.arr_str"), (std::vector<std::string>{"a", "", "bc"}));
  EXPECT_TRUE(g.GetIntArray("t.arr_empty")->empty());

  const Value* b = g.Find("t.arr_bool");
  ASSERT_NE(b, nullptr);
  const auto& barr = std::get<Array>(b->v);
  EXPECT_EQ(barr.elem_type, ValueType::kBool);
  ASSERT_EQ(barr.items.size(), 2u);
  EXPECT_FALSE(std::get<bool>(barr.items[0].v));
  EXPECT_TRUE(std::get<bool>(barr.items[1].v));

  const Value* nested = g.Find("t.nested");
  ASSERT_NE(nested, nullptr);
  const auto& outer = std::get<Array>(nested->v);
  EXPECT_EQ(outer.elem_type, ValueType::kArray);
  ASSERT_EQ(outer.items.size(), 2u);
  const auto& inner0 = std::get<Array>(outer.items[0].v);
  EXPECT_EQ(inner0.elem_type, ValueType::kUint8);
  EXPECT_EQ(std::get<uint64_t>(inner0.items[0].v), 7u);
  const auto& inner1 = std::get<Array>(outer.items[1].v);
  EXPECT_EQ(std::get<std::string>(inner1.items[1].v), "y");
}

INSTANTIATE_TEST_SUITE_P(V2AndV3, VersionTest, ::testing::Values(2u, 3u));

TEST(GgufGetters, ConvertIntegersWhenInRangeAndNameTheKeyOtherwise) {
  auto f = Parse(AllTypes().Build());
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const GgufFile& g = **f;
  EXPECT_EQ(*g.GetInt("t.u32"), 4000000000);       // unsigned -> signed when it fits
  EXPECT_EQ(g.GetUint("t.i16").status().code(), StatusCode::kInvalidArgument);  // negative
  EXPECT_EQ(g.GetInt("t.u64").status().code(), StatusCode::kInvalidArgument);   // > int64 max
  EXPECT_EQ(*g.GetFloat("t.u32"), 4e9);            // integers widen to double
  EXPECT_EQ(*g.GetFloat("t.i8"), -128.0);
  EXPECT_EQ(*g.GetFloatArray("t.arr_i16"), (std::vector<double>{1.0, -2.0}));
  EXPECT_EQ(g.GetIntArray("t.arr_u64").status().code(), StatusCode::kInvalidArgument);

  const Status wrong = g.GetString("t.u8").status();
  EXPECT_EQ(wrong.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.message().find("mem.gguf"), std::string::npos) << wrong.message();
  EXPECT_NE(wrong.message().find("'t.u8'"), std::string::npos) << wrong.message();
  EXPECT_EQ(g.GetBool("t.u8").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(g.GetUint("t.f32").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(g.GetFloat("t.str").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(g.GetStringArray("t.arr_i16").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(g.GetIntArray("t.str").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(g.GetFloatArray("t.arr_str").status().code(), StatusCode::kInvalidArgument);

  const Status missing = g.GetUint("no.such.key").status();
  EXPECT_EQ(missing.code(), StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("'no.such.key'"), std::string::npos) << missing.message();
  EXPECT_EQ(g.Find("no.such.key"), nullptr);
}

std::vector<uint8_t> Iota(size_t n, uint8_t start) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(start + i);
  return v;
}

TEST(GgufTensors, LayoutDefaultAlignment) {
  GgufBuilder b;
  b.Str("general.architecture", "llama");
  b.Tensor("a", {32, 3}, TensorType::kQ4_0, Iota(3 * 18, 1));  // 54 bytes -> next at 64
  b.Tensor("b", {5}, TensorType::kF32, Iota(20, 100));
  b.Tensor("c", {256, 2}, TensorType::kQ6_K, Iota(420, 7));
  const std::vector<uint8_t> bytes = b.Build(3);
  auto f = Parse(bytes);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const GgufFile& g = **f;
  EXPECT_EQ(g.alignment(), 32u);
  ASSERT_EQ(g.tensors().size(), 3u);
  const TensorInfo* a = g.FindTensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->type, TensorType::kQ4_0);
  EXPECT_EQ(a->dims, (std::vector<int64_t>{32, 3}));
  EXPECT_EQ(a->n_elements, 96u);
  EXPECT_EQ(a->n_bytes, 54u);
  EXPECT_EQ(a->offset, 0u);
  EXPECT_EQ((a->data - bytes.data()) % 32, 0);
  EXPECT_EQ(std::vector<uint8_t>(a->data, a->data + a->n_bytes), Iota(54, 1));
  const TensorInfo* bt = g.FindTensor("b");
  EXPECT_EQ(bt->offset, 64u);
  EXPECT_EQ(bt->data, a->data + 64);
  EXPECT_EQ(std::vector<uint8_t>(bt->data, bt->data + 20), Iota(20, 100));
  const TensorInfo* c = g.FindTensor("c");
  EXPECT_EQ(c->offset, 96u);
  EXPECT_EQ(c->n_bytes, 420u);
  EXPECT_EQ(c->data + c->n_bytes, bytes.data() + bytes.size());  // last tensor ends the file
  EXPECT_EQ(g.FindTensor("d"), nullptr);
}

TEST(GgufTensors, CustomAlignmentV2) {
  for (uint64_t alignment : {1u, 8u, 64u, 4096u}) {
    GgufBuilder b;
    b.U32("general.alignment", static_cast<uint32_t>(alignment));
    b.Tensor("x", {3}, TensorType::kF16, Iota(6, 9));
    b.Tensor("y", {2}, TensorType::kBF16, Iota(4, 50));
    const std::vector<uint8_t> bytes = b.Build(2, alignment);
    auto f = Parse(bytes);
    ASSERT_TRUE(f.ok()) << alignment << ": " << f.status().ToString();
    EXPECT_EQ((*f)->alignment(), alignment);
    const TensorInfo* x = (*f)->FindTensor("x");
    const TensorInfo* y = (*f)->FindTensor("y");
    EXPECT_EQ((x->data - bytes.data()) % static_cast<int64_t>(alignment), 0);
    EXPECT_EQ(y->offset, (6 + alignment - 1) / alignment * alignment);
    EXPECT_EQ(std::vector<uint8_t>(y->data, y->data + 4), Iota(4, 50));
  }
}

TEST(GgufTensors, NoTensorsNeedNoPadding) {
  GgufBuilder b;
  b.Str("general.architecture", "llama");
  auto f = Parse(b.Build());
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_TRUE((*f)->tensors().empty());
}

// Every strict prefix of a valid file is rejected cleanly (no crash, a message naming the file).
TEST(GgufHardening, EveryTruncationIsRejected) {
  GgufBuilder b = AllTypes();
  b.U32("general.alignment", 16);
  b.Tensor("w", {32, 2}, TensorType::kQ8_0, Iota(68, 3));
  b.Tensor("n", {4}, TensorType::kF32, Iota(16, 0));
  const std::vector<uint8_t> bytes = b.Build(3, 16);
  ASSERT_TRUE(Parse(bytes).ok());
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    auto f = GgufFile::FromBuffer(prefix, "cut.gguf");
    ASSERT_FALSE(f.ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument) << f.status().ToString();
    EXPECT_EQ(f.status().message().rfind("cut.gguf: ", 0), 0u) << f.status().message();
  }
}

TEST(GgufHardening, RejectsKeysThatAreEmptyTooLongOrNotUtf8) {
  for (const std::string& key : {std::string(), std::string(65536, 'k'), std::string("a\xC0\xAF"),
                                 std::string("\xED\xA0\x80")}) {
    GgufBuilder b;
    b.U32(key, 1);
    auto f = Parse(b.Build());
    EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument) << key.size();
  }
  GgufBuilder ok;
  ok.U32(std::string(65535, 'k'), 1).U32("ключ.日本", 2);
  EXPECT_TRUE(Parse(ok.Build()).ok());
}

TEST(GgufHardening, ArrayNestingIsBounded) {
  std::vector<uint8_t> v = GgufBuilder::Array(ValueType::kUint8, {GgufBuilder::Scalar<uint8_t>(1)});
  for (int depth = 1; depth <= 6; ++depth) {
    GgufBuilder b;
    b.Kv("deep", ValueType::kArray, v);
    auto f = Parse(b.Build());
    EXPECT_EQ(f.ok(), depth <= 4) << "depth " << depth << ": " << f.status().ToString();
    v = GgufBuilder::Array(ValueType::kArray, {v});
  }
}

std::string WriteTemp(const std::vector<uint8_t>& bytes) {
  std::string path = (std::filesystem::temp_directory_path() /
                      ("gguf_file_test_" + std::to_string(::getpid()) + ".gguf")).string();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

TEST(GgufOpen, MapsAFile) {
  GgufBuilder b;
  b.Str("general.architecture", "llama");
  b.Tensor("t", {8}, TensorType::kF32, Iota(32, 5));
  const std::string path = WriteTemp(b.Build());
  {
    auto f = GgufFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ((*f)->path(), path);
    const TensorInfo* t = (*f)->FindTensor("t");
    EXPECT_EQ(std::vector<uint8_t>(t->data, t->data + 32), Iota(32, 5));
  }
  std::remove(path.c_str());

  auto missing = GgufFile::Open("/nonexistent/dir/model.gguf");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/dir/model.gguf"), std::string::npos);

  const std::string empty = WriteTemp({});
  auto e = GgufFile::Open(empty);
  EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find("file is empty"), std::string::npos) << e.status().message();
  std::remove(empty.c_str());

  auto dir = GgufFile::Open(std::filesystem::temp_directory_path().string());
  EXPECT_EQ(dir.status().code(), StatusCode::kInvalidArgument);
}

// The default model: if it is missing the test fails with the command that fetches it.
using testing::OpenDefaultModel;

TEST(GgufDefaultModel, Structure) {
  std::unique_ptr<GgufFile> g = OpenDefaultModel();
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->version(), 3u);
  EXPECT_EQ(g->alignment(), 32u);
  EXPECT_EQ(g->tensors().size(), 272u);
  EXPECT_EQ(g->metadata().size(), 33u);
  EXPECT_EQ(*g->GetString("general.architecture"), "llama");
  EXPECT_EQ(*g->GetUint("llama.block_count"), 30u);
  EXPECT_EQ(g->GetStringArray("tokenizer.ggml.tokens")->size(), 49152u);
  EXPECT_EQ(g->GetIntArray("tokenizer.ggml.token_type")->size(), 49152u);
  EXPECT_EQ(g->GetStringArray("tokenizer.ggml.merges")->size(), 48900u);

  const TensorInfo* emb = g->FindTensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, TensorType::kQ8_0);
  EXPECT_EQ(emb->dims, (std::vector<int64_t>{576, 49152}));
  EXPECT_EQ(emb->n_bytes, 576u / 32 * 34 * 49152);
  const TensorInfo* q = g->FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, TensorType::kQ4_1);
  EXPECT_EQ(q->dims, (std::vector<int64_t>{576, 576}));
  EXPECT_EQ(g->FindTensor("output.weight"), nullptr);  // tied embeddings

  size_t q4_1 = 0, f32 = 0;
  const uint8_t* end = nullptr;
  for (const TensorInfo& t : g->tensors()) {
    q4_1 += t.type == TensorType::kQ4_1;
    f32 += t.type == TensorType::kF32;
    end = t.data + t.n_bytes;
  }
  EXPECT_EQ(q4_1, 210u);
  EXPECT_EQ(f32, 61u);
  EXPECT_EQ(end - g->tensors().front().data + static_cast<int64_t>(1785664),
            static_cast<int64_t>(std::filesystem::file_size(SLIM_DEFAULT_MODEL)));
}

}  // namespace
}  // namespace slim::gguf
