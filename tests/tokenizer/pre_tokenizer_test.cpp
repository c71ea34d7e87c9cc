// The pre-tokenizer table: every tokenizer.ggml.pre name llama.cpp knows compiles under PCRE2 and
// splits text into pieces that join back to it; the digit-grouping and empty-match (look-ahead
// only) regexes split where their definitions say. Exact ids per family are in
// llamacpp_vocab_test (the names llama.cpp ships vocabularies for).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/vocab.h"

namespace slim {
namespace {

// 256 single-byte tokens (GPT-2 mapped) and no merges: enough for PreTokenize.
std::unique_ptr<Tokenizer> BytesOnly(const std::string& pre) {
  VocabData v;
  v.pre = pre;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    static int n = 0;
    if (b == 0) n = 0;
    const uint32_t cp = printable ? b : 256 + n++;
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    v.tokens.push_back(s);
  }
  v.token_types.assign(v.tokens.size(), TokenType::kNormal);
  auto t = Tokenizer::Create(std::move(v));
  EXPECT_TRUE(t.ok()) << pre << ": " << t.status().ToString();
  return t.ok() ? std::move(t).value() : nullptr;
}

std::vector<std::string> Pieces(const Tokenizer& tok, const std::string& text) {
  auto p = tok.PreTokenize(text);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? *p : std::vector<std::string>{};
}

TEST(PreTokenizerTest, EveryKnownNameCompilesAndPartitionsText) {
  const std::vector<std::string> names = KnownPreTokenizers();
  EXPECT_GE(names.size(), 90u);
  const std::string text =
      "Hello, y'all! I'm 12345 years OLD\tcaf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E  \xF0\x9F\x98\x80\n\n"
      "  x=1.5e-3; \xD9\xA3\xD9\xA4 \xC2\xBD <sentinel:12> IMGIMGABZ \xE2\x80\x83" "end   ";
  for (const std::string& name : names) {
    auto tok = BytesOnly(name);
    ASSERT_NE(tok, nullptr) << name;
    std::string joined;
    const std::vector<std::string> pieces = Pieces(*tok, text);
    for (const std::string& p : pieces) {
      EXPECT_FALSE(p.empty()) << name;
      joined += p;
    }
    EXPECT_EQ(joined, text) << name;
    EXPECT_GE(pieces.size(), 3u) << name;  // the newline-only splitters (Gemma 4) cut it in three
  }
}

TEST(PreTokenizerTest, DigitGroupsOfThreeFromTheRight) {
  for (const char* name : {"afmoe", "tiny_aya", "superbpe"}) {
    auto tok = BytesOnly(name);
    ASSERT_NE(tok, nullptr);
    const std::vector<std::string> pieces = Pieces(*tok, "1234567");
    EXPECT_EQ(pieces, (std::vector<std::string>{"1", "234", "567"})) << name;
  }
}

TEST(PreTokenizerTest, UnknownAndUnsupportedNamesAreRefusedByName) {
  for (const char* name : {"kimi-k2", "no-such-pre"}) {
    auto spec = PreTokenizerFor(name);
    ASSERT_FALSE(spec.ok());
    EXPECT_EQ(spec.status().code(), StatusCode::kUnimplemented);
    EXPECT_NE(spec.status().message().find(name), std::string::npos);
  }
}

}  // namespace
}  // namespace slim
