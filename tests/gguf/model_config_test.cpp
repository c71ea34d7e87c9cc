// ConfigFromGguf and ModelConfig::Validate: the default model's hyperparameters, defaults and
// fallbacks (kv heads, rope, vocab, head_dim), rope scaling, and out-of-range values rejected
// with the GGUF key (or struct field) and file named.
#include "engine/model/model_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "engine/gguf/gguf_file.h"
#include "tests/gguf/gguf_builder.h"

namespace slim {
namespace {

using gguf::ValueType;
using gguf::testing::GgufBuilder;
using gguf::testing::TinyLlama;

// Parses `b` and reads its config; the file must parse.
StatusOr<ModelConfig> Config(const GgufBuilder& b) {
  auto f = gguf::GgufFile::FromBuffer(b.Build(), "tiny.gguf");
  if (!f.ok()) {
    ADD_FAILURE() << "did not parse: " << f.status().ToString();
    return f.status();
  }
  return ConfigFromGguf(**f);
}

// Expects the config of `b` to be rejected with a message naming `key` and containing `what`.
void ExpectRejected(const GgufBuilder& b, const std::string& key, const std::string& what) {
  auto c = Config(b);
  ASSERT_FALSE(c.ok()) << "accepted; expected an error about " << key;
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << c.status().ToString();
  const Status status = c.status();
  const std::string& m = status.message();
  EXPECT_EQ(m.rfind("tiny.gguf: ", 0), 0u) << m;
  EXPECT_NE(m.find("'" + key + "'"), std::string::npos) << m;
  EXPECT_NE(m.find(what), std::string::npos) << m;
}

TEST(ModelConfigDefaultModel, MatchesSmolLM2) {
  if (!std::filesystem::exists(SLIM_DEFAULT_MODEL)) {
    FAIL() << "default model " << SLIM_DEFAULT_MODEL << " is missing: run scripts/fetch-model.sh";
  }
  auto f = gguf::GgufFile::Open(SLIM_DEFAULT_MODEL);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto c = ConfigFromGguf(**f);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, "llama");
  EXPECT_FALSE(c->name.empty());
  EXPECT_EQ(c->n_layers, 30);
  EXPECT_EQ(c->n_heads, 9);
  EXPECT_EQ(c->n_kv_heads, 3);
  EXPECT_EQ(c->d_model, 576);
  EXPECT_EQ(c->d_ff, 1536);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->rope_dim, 64);
  EXPECT_EQ(c->vocab_size, 49152);
  EXPECT_EQ(c->context_length, 8192);
  EXPECT_EQ(c->rope_theta, 100000.0f);
  EXPECT_FLOAT_EQ(c->rms_eps, 1e-5f);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_TRUE(c->tied_embeddings);
  EXPECT_TRUE(c->Validate().ok());
}

TEST(ModelConfigGguf, TinyLlamaAndDefaults) {
  GgufBuilder b = TinyLlama();
  b.Remove("llama.attention.head_count_kv").Remove("llama.rope.freq_base");
  b.Tensor("output.weight", {64, 32}, gguf::TensorType::kF16);
  auto c = Config(b);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->name, "tiny");
  EXPECT_EQ(c->n_layers, 2);
  EXPECT_EQ(c->n_heads, 4);
  EXPECT_EQ(c->n_kv_heads, 4);        // defaults to head_count
  EXPECT_EQ(c->head_dim, 16);         // embedding_length / head_count
  EXPECT_FALSE(c->head_dim_explicit);
  EXPECT_EQ(c->rope_dim, 16);         // defaults to head_dim
  EXPECT_EQ(c->rope_theta, 10000.0f); // default
  EXPECT_EQ(c->vocab_size, 32);
  EXPECT_FALSE(c->tied_embeddings);   // output.weight present
}

TEST(ModelConfigGguf, KeyLengthOverridesHeadDim) {
  GgufBuilder b = TinyLlama();
  b.U32("llama.attention.key_length", 32).U32("llama.rope.dimension_count", 16);
  auto c = Config(b);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->head_dim, 32);  // 4 heads x 32 != 64 is fine when key_length is given
  EXPECT_TRUE(c->head_dim_explicit);
  EXPECT_EQ(c->rope_dim, 16);
}

TEST(ModelConfigGguf, VocabFallsBackToTokensThenEmbedding) {
  GgufBuilder b = TinyLlama();
  b.Remove("llama.vocab_size");
  auto from_embd = Config(b);
  ASSERT_TRUE(from_embd.ok()) << from_embd.status().ToString();
  EXPECT_EQ(from_embd->vocab_size, 32);  // token_embd.weight dims[1]

  std::vector<std::string> tokens(40, "t");
  b.Kv("tokenizer.ggml.tokens", ValueType::kArray, GgufBuilder::StringArray(tokens));
  auto from_tokens = Config(b);
  ASSERT_TRUE(from_tokens.ok()) << from_tokens.status().ToString();
  EXPECT_EQ(from_tokens->vocab_size, 40);
}

TEST(ModelConfigGguf, AcceptsIntegerTypesOtherThanUint32) {
  GgufBuilder b = TinyLlama();
  b.Set("llama.block_count", ValueType::kUint8, GgufBuilder::Scalar<uint8_t>(3))
      .Set("llama.context_length", ValueType::kUint64, GgufBuilder::Scalar<uint64_t>(4096))
      .Set("llama.attention.head_count", ValueType::kInt32, GgufBuilder::Scalar<int32_t>(4))
      .Set("llama.rope.freq_base", ValueType::kFloat64, GgufBuilder::Scalar<double>(500000.0));
  auto c = Config(b);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->n_layers, 3);
  EXPECT_EQ(c->context_length, 4096);
  EXPECT_EQ(c->rope_theta, 500000.0f);
}

TEST(ModelConfigGguf, RopeScaling) {
  GgufBuilder linear = TinyLlama();
  linear.Str("llama.rope.scaling.type", "linear").F32("llama.rope.scaling.factor", 4.0f);
  auto c = Config(linear);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_EQ(c->rope_scaling.factor, 4.0f);

  GgufBuilder llama3 = TinyLlama();
  llama3.Str("llama.rope.scaling.type", "llama3")
      .F32("llama.rope.scaling.factor", 8.0f)
      .U32("llama.rope.scaling.original_context_length", 8192)
      .F32("llama.rope.scaling.low_freq_factor", 1.0f)
      .F32("llama.rope.scaling.high_freq_factor", 4.0f);
  c = Config(llama3);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c->rope_scaling.factor, 8.0f);
  EXPECT_EQ(c->rope_scaling.original_context, 8192);
  EXPECT_EQ(c->rope_scaling.high_freq_factor, 4.0f);

  GgufBuilder none = TinyLlama();
  none.Str("llama.rope.scaling.type", "none").F32("llama.rope.scaling.factor", 3.0f);
  c = Config(none);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);

  GgufBuilder legacy = TinyLlama();
  legacy.F32("llama.rope.scale_linear", 2.0f);
  c = Config(legacy);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_EQ(c->rope_scaling.factor, 2.0f);

  GgufBuilder bad_high = llama3;
  bad_high.Set("llama.rope.scaling.high_freq_factor", ValueType::kFloat32, GgufBuilder::Scalar(0.5f));
  ExpectRejected(bad_high, "llama.rope.scaling.high_freq_factor", "must be greater than");
  GgufBuilder yarn = TinyLlama();
  yarn.Str("llama.rope.scaling.type", "yarn");
  ExpectRejected(yarn, "llama.rope.scaling.type", "not supported");
}

TEST(ModelConfigGguf, OtherLlamaFamilyArchitectures) {
  for (const std::string arch : {"mistral", "qwen2"}) {
    GgufBuilder b;
    b.Str("general.architecture", arch)
        .U32(arch + ".block_count", 2)
        .U32(arch + ".context_length", 512)
        .U32(arch + ".embedding_length", 64)
        .U32(arch + ".feed_forward_length", 128)
        .U32(arch + ".attention.head_count", 4)
        .F32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f)
        .U32(arch + ".vocab_size", 32);
    auto c = Config(b);
    ASSERT_TRUE(c.ok()) << arch << ": " << c.status().ToString();
    EXPECT_EQ(c->arch, arch);
    EXPECT_EQ(c->n_layers, 2);
  }
  GgufBuilder gpt2 = TinyLlama();
  gpt2.Set("general.architecture", ValueType::kString, GgufBuilder::String("gpt2"));
  ExpectRejected(gpt2, "general.architecture", "not supported");
}

struct OutOfRange {
  std::string key;
  ValueType type;
  std::vector<uint8_t> value;
  std::string message;
};

TEST(ModelConfigGguf, OutOfRangeValuesNameTheKey) {
  const std::vector<OutOfRange> cases = {
      {"llama.block_count", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(0), "out of range [1, 512]"},
      {"llama.block_count", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(600), "out of range [1, 512]"},
      {"llama.block_count", ValueType::kUint64, GgufBuilder::Scalar<uint64_t>(1ull << 40), "out of range"},
      {"llama.block_count", ValueType::kInt32, GgufBuilder::Scalar<int32_t>(-2), "= -2 is out of range"},
      {"llama.block_count", ValueType::kFloat32, GgufBuilder::Scalar<float>(2.0f), "float32"},
      {"llama.attention.head_count", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(0), "out of range [1, 1024]"},
      {"llama.attention.head_count", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(2048), "out of range [1, 1024]"},
      {"llama.attention.head_count_kv", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(3), "does not divide"},
      {"llama.attention.head_count_kv", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(0), "out of range"},
      {"llama.embedding_length", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(66), "not a multiple of"},
      {"llama.feed_forward_length", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(0), "out of range [1, 1048576]"},
      {"llama.feed_forward_length", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(2u << 20), "out of range"},
      {"llama.vocab_size", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(0), "out of range [1, 4194304]"},
      {"llama.vocab_size", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(5u << 20), "out of range"},
      {"llama.context_length", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(0), "out of range [1, 16777216]"},
      {"llama.context_length", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(1u << 25), "out of range"},
      {"llama.rope.freq_base", ValueType::kFloat32, GgufBuilder::Scalar<float>(0.0f), "must be positive and finite"},
      {"llama.rope.freq_base", ValueType::kFloat32, GgufBuilder::Scalar<float>(INFINITY), "must be positive and finite"},
      {"llama.rope.freq_base", ValueType::kString, GgufBuilder::String("1e4"), "expected a number"},
      {"llama.attention.layer_norm_rms_epsilon", ValueType::kFloat32, GgufBuilder::Scalar<float>(0.0f), "is not in (0, 1)"},
      {"llama.attention.layer_norm_rms_epsilon", ValueType::kFloat32, GgufBuilder::Scalar<float>(-1e-5f), "is not in (0, 1)"},
      {"llama.attention.layer_norm_rms_epsilon", ValueType::kFloat32, GgufBuilder::Scalar<float>(NAN), "is not in (0, 1)"},
      {"llama.rope.dimension_count", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(18), "out of range [2, 16]"},
      {"llama.rope.dimension_count", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(5), "must be even"},
      {"llama.attention.key_length", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(1024), "out of range [2, 512]"},
      {"llama.attention.key_length", ValueType::kUint32, GgufBuilder::Scalar<uint32_t>(17), "must be even"},
  };
  for (const OutOfRange& c : cases) {
    SCOPED_TRACE(c.key + " -> " + c.message);
    GgufBuilder b = TinyLlama();
    b.Set(c.key, c.type, c.value);
    ExpectRejected(b, c.key, c.message);
  }
}

TEST(ModelConfigGguf, MissingRequiredKeysAreNamed) {
  for (const std::string key : {"general.architecture", "llama.block_count", "llama.embedding_length",
                                "llama.feed_forward_length", "llama.attention.head_count",
                                "llama.context_length", "llama.attention.layer_norm_rms_epsilon"}) {
    SCOPED_TRACE(key);
    GgufBuilder b = TinyLlama();
    b.Remove(key);
    ExpectRejected(b, key, "is missing");
  }
}

ModelConfig ValidConfig() {
  ModelConfig c;
  c.n_layers = 4;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.d_model = 512;
  c.head_dim = 64;
  c.rope_dim = 64;
  c.d_ff = 1024;
  c.vocab_size = 1000;
  c.context_length = 2048;
  return c;
}

TEST(ModelConfigValidate, NamesTheField) {
  EXPECT_TRUE(ValidConfig().Validate().ok());
  struct Case { void (*mutate)(ModelConfig&); const char* field; };
  const Case cases[] = {
      {[](ModelConfig& c) { c.n_layers = 513; }, "'n_layers'"},
      {[](ModelConfig& c) { c.n_heads = 0; }, "'n_heads'"},
      {[](ModelConfig& c) { c.n_kv_heads = 3; }, "'n_kv_heads'"},
      {[](ModelConfig& c) { c.d_model = 500; }, "'d_model'"},
      {[](ModelConfig& c) { c.head_dim = 63; c.d_model = 504; }, "'head_dim'"},
      {[](ModelConfig& c) { c.head_dim = 1024; c.d_model = 8192; c.rope_dim = 64; }, "'head_dim'"},
      {[](ModelConfig& c) { c.rope_dim = 66; }, "'rope_dim'"},
      {[](ModelConfig& c) { c.d_ff = 0; }, "'d_ff'"},
      {[](ModelConfig& c) { c.vocab_size = (1 << 22) + 1; }, "'vocab_size'"},
      {[](ModelConfig& c) { c.context_length = -1; }, "'context_length'"},
      {[](ModelConfig& c) { c.rope_theta = NAN; }, "'rope_theta'"},
      {[](ModelConfig& c) { c.rms_eps = 1.0f; }, "'rms_eps'"},
      {[](ModelConfig& c) {
         c.rope_scaling.type = RopeScaling::Type::kLinear;
         c.rope_scaling.factor = -1.0f;
       }, "'rope_scaling.factor'"},
  };
  for (const Case& k : cases) {
    ModelConfig c = ValidConfig();
    k.mutate(c);
    const Status s = c.Validate();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << k.field;
    EXPECT_NE(s.message().find(k.field), std::string::npos) << s.message();
  }
  ModelConfig wide = ValidConfig();  // head_dim given explicitly: d_model need not match
  wide.head_dim = 128;
  wide.rope_dim = 128;
  wide.head_dim_explicit = true;
  EXPECT_TRUE(wide.Validate().ok()) << wide.Validate().ToString();
}

}  // namespace
}  // namespace slim
