// VocabFromGguf on small GGUF buffers built here: what it reads, the EOT fallback, and errors
// that name the key and the file (missing keys, wrong types, bad ids, length mismatches).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/gguf/gguf_file.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/vocab.h"

namespace slim {
namespace {

// Minimal GGUF v3 writer: metadata only, no tensors.
class GgufBuilder {
 public:
  GgufBuilder& Str(const std::string& key, const std::string& v) {
    Key(key, 8);
    PutStr(v);
    return Count();
  }
  GgufBuilder& U32(const std::string& key, uint32_t v) {
    Key(key, 4);
    Put(v);
    return Count();
  }
  GgufBuilder& I32(const std::string& key, int32_t v) {
    Key(key, 5);
    Put(v);
    return Count();
  }
  GgufBuilder& Bool(const std::string& key, bool v) {
    Key(key, 7);
    Put(static_cast<uint8_t>(v));
    return Count();
  }
  GgufBuilder& StrArray(const std::string& key, const std::vector<std::string>& v) {
    Key(key, 9);
    Put(uint32_t{8});
    Put(static_cast<uint64_t>(v.size()));
    for (const auto& s : v) PutStr(s);
    return Count();
  }
  GgufBuilder& I32Array(const std::string& key, const std::vector<int32_t>& v) {
    Key(key, 9);
    Put(uint32_t{5});
    Put(static_cast<uint64_t>(v.size()));
    for (int32_t x : v) Put(x);
    return Count();
  }
  std::vector<uint8_t> Bytes() const {
    std::vector<uint8_t> out;
    auto put = [&](const void* p, size_t n) {
      out.insert(out.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    };
    put("GGUF", 4);
    const uint32_t version = 3;
    const uint64_t n_tensors = 0;
    put(&version, 4);
    put(&n_tensors, 8);
    put(&n_kv_, 8);
    out.insert(out.end(), body_.begin(), body_.end());
    return out;
  }

 private:
  template <typename T>
  void Put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    body_.insert(body_.end(), p, p + sizeof(T));
  }
  void PutStr(const std::string& s) {
    Put(static_cast<uint64_t>(s.size()));
    body_.insert(body_.end(), s.begin(), s.end());
  }
  void Key(const std::string& key, uint32_t type) {
    PutStr(key);
    Put(type);
  }
  GgufBuilder& Count() {
    ++n_kv_;
    return *this;
  }
  std::vector<uint8_t> body_;
  uint64_t n_kv_ = 0;
};

// A small valid byte-level vocabulary: "a", "b", "ab", <|im_start|>, <|im_end|>.
GgufBuilder Base() {
  GgufBuilder b;
  b.Str("tokenizer.ggml.model", "gpt2")
      .Str("tokenizer.ggml.pre", "smollm")
      .StrArray("tokenizer.ggml.tokens", {"a", "b", "ab", "<|im_start|>", "<|im_end|>"})
      .I32Array("tokenizer.ggml.token_type", {1, 1, 1, 3, 3})
      .StrArray("tokenizer.ggml.merges", {"a b"})
      .U32("tokenizer.ggml.bos_token_id", 3)
      .U32("tokenizer.ggml.eos_token_id", 4)
      .Bool("tokenizer.ggml.add_bos_token", false)
      .Str("tokenizer.chat_template", "{{ '<|im_start|>' }}");
  return b;
}

StatusOr<VocabData> Load(const std::vector<uint8_t>& bytes) {
  auto file = gguf::GgufFile::FromBuffer(bytes, "mem.gguf");
  if (!file.ok()) return file.status();
  return VocabFromGguf(**file);
}

void ExpectErrorNames(const StatusOr<VocabData>& v, const std::string& key) {
  ASSERT_FALSE(v.ok()) << "expected an error naming " << key;
  EXPECT_NE(v.status().message().find(key), std::string::npos) << v.status().ToString();
  EXPECT_NE(v.status().message().find("mem.gguf"), std::string::npos) << v.status().ToString();
}

TEST(VocabTest, ReadsTokenizerMetadata) {
  const std::vector<uint8_t> bytes = Base().Bytes();
  auto v = Load(bytes);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->model, "gpt2");
  EXPECT_EQ(v->pre, "smollm");
  EXPECT_EQ(v->tokens, (std::vector<std::string>{"a", "b", "ab", "<|im_start|>", "<|im_end|>"}));
  EXPECT_EQ(v->token_types[3], TokenType::kControl);
  EXPECT_EQ(v->merges, (std::vector<std::string>{"a b"}));
  EXPECT_EQ(v->bos_id, 3);
  EXPECT_EQ(v->eos_id, 4);
  EXPECT_EQ(v->unk_id, -1);
  EXPECT_EQ(v->eot_id, 4);  // absent key: the <|im_end|> control token
  EXPECT_FALSE(v->add_bos);
  EXPECT_EQ(v->chat_template, "{{ '<|im_start|>' }}");

  auto tok = Tokenizer::Create(*v);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  auto ids = (*tok)->Encode("<|im_start|>ab", {.add_bos = false, .parse_special = true});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{3, 2}));
}

TEST(VocabTest, ExplicitEotWins) {
  const std::vector<uint8_t> bytes = Base().U32("tokenizer.ggml.eot_token_id", 3).Bytes();
  auto v = Load(bytes);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->eot_id, 3);
}

TEST(VocabTest, MissingTokenTypesMeanNormal) {
  GgufBuilder b;
  b.Str("tokenizer.ggml.model", "gpt2").StrArray("tokenizer.ggml.tokens", {"a"}).StrArray("tokenizer.ggml.merges", {});
  auto v = Load(b.Bytes());
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->token_types, (std::vector<TokenType>{TokenType::kNormal}));
  EXPECT_EQ(v->pre, "");
  EXPECT_EQ(v->eot_id, -1);
}

TEST(VocabTest, ErrorsNameKeyAndFile) {
  {
    GgufBuilder b;
    b.StrArray("tokenizer.ggml.tokens", {"a"});
    ExpectErrorNames(Load(b.Bytes()), "tokenizer.ggml.model");
  }
  {
    GgufBuilder b;
    b.Str("tokenizer.ggml.model", "gpt2").StrArray("tokenizer.ggml.merges", {});
    ExpectErrorNames(Load(b.Bytes()), "tokenizer.ggml.tokens");
  }
  {
    GgufBuilder b;
    b.Str("tokenizer.ggml.model", "gpt2").StrArray("tokenizer.ggml.tokens", {"a"});
    ExpectErrorNames(Load(b.Bytes()), "tokenizer.ggml.merges");
  }
  {
    GgufBuilder b;
    b.Str("tokenizer.ggml.model", "gpt2")
        .StrArray("tokenizer.ggml.tokens", {"a", "b"})
        .I32Array("tokenizer.ggml.token_type", {1})
        .StrArray("tokenizer.ggml.merges", {});
    ExpectErrorNames(Load(b.Bytes()), "tokenizer.ggml.token_type");
  }
  {
    GgufBuilder b;
    b.Str("tokenizer.ggml.model", "gpt2")
        .StrArray("tokenizer.ggml.tokens", {"a"})
        .I32Array("tokenizer.ggml.token_type", {9})
        .StrArray("tokenizer.ggml.merges", {});
    ExpectErrorNames(Load(b.Bytes()), "tokenizer.ggml.token_type");
  }
  ExpectErrorNames(Load(Base().U32("tokenizer.ggml.unknown_token_id", 5).Bytes()), "tokenizer.ggml.unknown_token_id");
  ExpectErrorNames(Load(Base().I32("tokenizer.ggml.padding_token_id", -3).Bytes()), "tokenizer.ggml.padding_token_id");
  ExpectErrorNames(Load(Base().Str("tokenizer.ggml.eot_token_id", "2").Bytes()), "tokenizer.ggml.eot_token_id");
  {
    GgufBuilder b;
    b.Str("tokenizer.ggml.model", "gpt2")
        .StrArray("tokenizer.ggml.tokens", {"a"})
        .StrArray("tokenizer.ggml.merges", {})
        .Bool("tokenizer.ggml.add_bos_token", true);
    ExpectErrorNames(Load(b.Bytes()), "tokenizer.ggml.add_bos_token");
  }
  {
    GgufBuilder b;
    b.Str("tokenizer.ggml.model", "gpt2")
        .StrArray("tokenizer.ggml.tokens", {"a"})
        .StrArray("tokenizer.ggml.merges", {})
        .U32("tokenizer.chat_template", 1);
    ExpectErrorNames(Load(b.Bytes()), "tokenizer.chat_template");
  }
}

}  // namespace
}  // namespace slim
