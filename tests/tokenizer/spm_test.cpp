// SentencePiece (tokenizer.ggml.model = llama) rules on small vocabularies: merges by score, byte
// fallback, the unknown token, the space prefix after special tokens, RSTRIP, decoding. The full
// llama.cpp comparison is llamacpp_vocab_test (llama-spm, phi-3).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "engine/gguf/gguf_file.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/vocab.h"

namespace slim {
namespace {

constexpr const char* kSp = "\xE2\x96\x81";  // U+2581

// <unk>, <s>, </s>, then (with_bytes) <0x00>..<0xFF>, then the given normal tokens and scores.
struct TinySpm {
  VocabData data;
  TinySpm(const std::vector<std::pair<std::string, float>>& normal, bool with_bytes = true) {
    data.model = "llama";
    data.add_space_prefix = true;
    Add("<unk>", TokenType::kUnknown, 0);
    Add("<s>", TokenType::kControl, 0);
    Add("</s>", TokenType::kControl, 0);
    data.unk_id = 0;
    data.bos_id = 1;
    data.eos_id = 2;
    if (with_bytes) {
      for (int b = 0; b < 256; ++b) {
        char hex[8];
        std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
        Add(hex, TokenType::kByte, 0);
      }
    }
    for (const auto& [t, s] : normal) Add(t, TokenType::kNormal, s);
  }
  int32_t Add(const std::string& t, TokenType type, float score) {
    data.tokens.push_back(t);
    data.token_types.push_back(type);
    data.scores.push_back(score);
    return static_cast<int32_t>(data.tokens.size() - 1);
  }
  int32_t Id(const std::string& t) const {
    for (size_t i = 0; i < data.tokens.size(); ++i) {
      if (data.tokens[i] == t) return static_cast<int32_t>(i);
    }
    return -1;
  }
  std::unique_ptr<Tokenizer> Build() const {
    auto t = Tokenizer::Create(data);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? std::move(t).value() : nullptr;
  }
};

std::vector<int32_t> Enc(const Tokenizer& tok, const std::string& text, bool parse_special = false) {
  EncodeOptions o;
  o.parse_special = parse_special;
  auto ids = tok.Encode(text, o);
  EXPECT_TRUE(ids.ok()) << ids.status().ToString();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

TEST(SpmTest, HigherScoreMergesFirst) {
  const std::string sp = kSp;
  TinySpm v({{sp, -5}, {"a", -3}, {"b", -3}, {"c", -3}, {"ab", -2}, {"bc", -1}, {sp + "a", -4}});
  auto tok = v.Build();
  // "▁abc": bc (-1) before ab (-2) and ▁a (-4); then ▁a + bc is no token.
  EXPECT_EQ(Enc(*tok, "abc"), (std::vector<int32_t>{v.Id(sp + "a"), v.Id("bc")}));
  v.data.scores[v.Id("ab")] = 0;  // now ab first, then ▁ + ab is no token
  auto tok2 = v.Build();
  EXPECT_EQ(Enc(*tok2, "abc"), (std::vector<int32_t>{v.Id(sp), v.Id("ab"), v.Id("c")}));
}

TEST(SpmTest, ByteFallbackAndUnknown) {
  TinySpm v({{kSp, -1}, {"a", -1}});
  auto tok = v.Build();
  EXPECT_EQ(Enc(*tok, "a\xC3\xA9"),
            (std::vector<int32_t>{v.Id(kSp), v.Id("a"), v.Id("<0xC3>"), v.Id("<0xA9>")}));
  TinySpm nobytes({{kSp, -1}, {"a", -1}}, /*with_bytes=*/false);
  auto tok2 = nobytes.Build();
  EXPECT_EQ(Enc(*tok2, "\xC3\xA9"), (std::vector<int32_t>{nobytes.Id(kSp), 0, 0}));  // <unk> per byte
}

TEST(SpmTest, SpacePrefixAtStartAndAfterSpecialTokens) {
  const std::string sp = kSp;
  TinySpm v({{sp, -1}, {"a", -1}, {sp + "a", 0}});
  auto tok = v.Build();
  EXPECT_EQ(Enc(*tok, "a"), (std::vector<int32_t>{v.Id(sp + "a")}));
  EXPECT_EQ(Enc(*tok, "a<s>a", /*parse_special=*/true), (std::vector<int32_t>{v.Id(sp + "a"), 1, v.Id(sp + "a")}));
  v.data.add_space_prefix = false;
  auto no_prefix = v.Build();
  EXPECT_EQ(Enc(*no_prefix, "a"), (std::vector<int32_t>{v.Id("a")}));
  // RSTRIP (Phi-3's special tokens): the whitespace after the token goes, the prefix stays.
  v.data.add_space_prefix = true;
  v.data.rstrip_ids = {1};
  auto rstrip = v.Build();
  EXPECT_EQ(Enc(*rstrip, "<s> \n a", true), (std::vector<int32_t>{1, v.Id(sp + "a")}));
}

TEST(SpmTest, DecodeUnescapesSpacesAndBytes) {
  const std::string sp = kSp;
  TinySpm v({{sp, -1}, {"a", -1}, {sp + "a", 0}});
  auto tok = v.Build();
  const std::vector<int32_t> ids = Enc(*tok, "a a\xC3\xA9");
  EXPECT_EQ(tok->Decode(ids), " a a\xC3\xA9");
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{1, v.Id(sp + "a")}), " a");  // control tokens render as nothing
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{1, v.Id(sp + "a")}, /*render_special=*/true), "<s> a");
  EXPECT_GE(tok->max_input_bytes_per_token(), 2u);
}

TEST(SpmTest, RefusesMismatchedScores) {
  TinySpm v({{"a", -1}});
  v.data.scores.pop_back();
  EXPECT_EQ(Tokenizer::Create(v.data).status().code(), StatusCode::kInvalidArgument);
}

TEST(SpmTest, LlamaSpmGgufMetadata) {
  auto file = gguf::GgufFile::Open(SLIM_SOURCE_DIR "/models/llamacpp-vocab/ggml-vocab-llama-spm.gguf");
  ASSERT_TRUE(file.ok()) << file.status().ToString() << " (run scripts/fetch-llamacpp-vocabs.sh)";
  auto v = VocabFromGguf(**file);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->model, "llama");
  EXPECT_EQ(v->tokens.size(), 32000u);
  EXPECT_EQ(v->scores.size(), 32000u);
  EXPECT_EQ(v->unk_id, 0);
  EXPECT_EQ(v->bos_id, 1);
  EXPECT_EQ(v->eos_id, 2);
  EXPECT_TRUE(v->add_bos);           // llama.cpp's SentencePiece default
  EXPECT_TRUE(v->add_space_prefix);  // likewise
  EXPECT_TRUE(v->rstrip_ids.empty());
  auto phi3 = gguf::GgufFile::Open(SLIM_SOURCE_DIR "/models/llamacpp-vocab/ggml-vocab-phi-3.gguf");
  ASSERT_TRUE(phi3.ok());
  auto pv = VocabFromGguf(**phi3);
  ASSERT_TRUE(pv.ok());
  auto tok = Tokenizer::Create(*pv);
  ASSERT_TRUE(tok.ok());
  const int32_t user = (*tok)->FindToken("<|user|>");
  ASSERT_GE(user, 0);
  EXPECT_NE(std::find(pv->rstrip_ids.begin(), pv->rstrip_ids.end(), user), pv->rstrip_ids.end());
}

}  // namespace
}  // namespace slim
