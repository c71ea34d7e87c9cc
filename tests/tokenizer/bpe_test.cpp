// Byte-level BPE on tiny hand-made vocabularies: merge order and ties, byte fallback,
// pre-tokenizer pieces, special tokens, UTF-8 validation, decoding and the StreamDecoder.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace slim {
namespace {

// GPT-2 bytes_to_unicode, written out independently of the tokenizer: the vocabulary side.
std::string MapBytes(std::string_view raw) {
  std::string out;
  for (const unsigned char b : raw) {
    int cp = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))) {
      int n = 0;
      for (int c = 0; c < b; ++c) {
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE))) ++n;
      }
      cp = 256 + n;
    }
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}

// Vocabulary with the 256 byte tokens at ids 0..255 (id == byte value), then `extra` tokens
// (raw text, mapped here) and merges given as raw "left right" pairs.
struct TinyVocab {
  VocabData data;
  TinyVocab(const std::string& pre, const std::vector<std::string>& extra,
            const std::vector<std::pair<std::string, std::string>>& merges) {
    data.pre = pre;
    for (int b = 0; b < 256; ++b) data.tokens.push_back(MapBytes(std::string(1, static_cast<char>(b))));
    for (const auto& e : extra) data.tokens.push_back(MapBytes(e));
    data.token_types.assign(data.tokens.size(), TokenType::kNormal);
    for (const auto& [l, r] : merges) data.merges.push_back(MapBytes(l) + " " + MapBytes(r));
  }
  int32_t Add(const std::string& text, TokenType type) {
    data.tokens.push_back(text);
    data.token_types.push_back(type);
    return static_cast<int32_t>(data.tokens.size() - 1);
  }
  std::unique_ptr<Tokenizer> Build() {
    auto t = Tokenizer::Create(data);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? std::move(t).value() : nullptr;
  }
};

std::vector<int32_t> Enc(const Tokenizer& tok, std::string_view text, bool parse_special = false) {
  auto ids = tok.Encode(text, {.add_bos = false, .parse_special = parse_special});
  EXPECT_TRUE(ids.ok()) << ids.status().ToString();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

std::vector<std::string> Pieces(const Tokenizer& tok, std::string_view text) {
  auto p = tok.PreTokenize(text);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? *p : std::vector<std::string>{};
}

int32_t B(char c) { return static_cast<unsigned char>(c); }

TEST(BpeTest, LowestRankMergesFirst) {
  // ids: 256 "bc", 257 "ab", 258 "abc"
  {
    TinyVocab v("gpt2", {"bc", "ab", "abc"}, {{"b", "c"}, {"a", "b"}, {"a", "bc"}});
    auto tok = v.Build();
    EXPECT_EQ(Enc(*tok, "abc"), (std::vector<int32_t>{258}));  // b+c (rank 0), then a+bc
  }
  {
    TinyVocab v("gpt2", {"bc", "ab", "abc"}, {{"a", "b"}, {"b", "c"}, {"a", "bc"}});
    auto tok = v.Build();
    EXPECT_EQ(Enc(*tok, "abc"), (std::vector<int32_t>{257, B('c')}));  // a+b wins, "ab c" has no merge
  }
}

TEST(BpeTest, EqualRanksMergeLeftmostFirst) {
  TinyVocab v("gpt2", {"aa"}, {{"a", "a"}});
  auto tok = v.Build();
  EXPECT_EQ(Enc(*tok, "aaa"), (std::vector<int32_t>{256, B('a')}));
  EXPECT_EQ(Enc(*tok, "aaaa"), (std::vector<int32_t>{256, 256}));
  EXPECT_EQ(Enc(*tok, "aaaaa"), (std::vector<int32_t>{256, 256, B('a')}));
}

TEST(BpeTest, MergedSymbolsKeepMerging) {
  // "aaaa": a+a twice, then aa+aa.
  TinyVocab v("gpt2", {"aa", "aaaa"}, {{"a", "a"}, {"aa", "aa"}});
  auto tok = v.Build();
  EXPECT_EQ(Enc(*tok, "aaaa"), (std::vector<int32_t>{257}));
  EXPECT_EQ(Enc(*tok, "aaaaaa"), (std::vector<int32_t>{257, 256}));
}

TEST(BpeTest, NonAsciiWithoutMergesBecomesByteTokens) {
  TinyVocab v("gpt2", {}, {});
  auto tok = v.Build();
  // "é" = C3 A9, "😀" = F0 9F 98 80: one byte token each.
  EXPECT_EQ(Enc(*tok, "\xC3\xA9"), (std::vector<int32_t>{0xC3, 0xA9}));
  EXPECT_EQ(Enc(*tok, "\xF0\x9F\x98\x80"), (std::vector<int32_t>{0xF0, 0x9F, 0x98, 0x80}));
  EXPECT_EQ(tok->Decode(Enc(*tok, "h\xC3\xA9llo \xF0\x9F\x98\x80!")), "h\xC3\xA9llo \xF0\x9F\x98\x80!");
}

TEST(BpeTest, MergeResultMissingFromVocabFallsBackToSingleByteTokens) {
  // As llama.cpp: a merge whose result is not a token yields the tokens of the single bytes of
  // its (byte-mapped) text, and mapped characters that are not one byte are dropped.
  TinyVocab v("gpt2", {}, {{"x", "y"}, {"\xC3", "\xA9"}});
  auto tok = v.Build();
  EXPECT_EQ(Enc(*tok, "xy"), (std::vector<int32_t>{B('x'), B('y')}));
  EXPECT_EQ(Enc(*tok, "\xC3\xA9"), (std::vector<int32_t>{}));
}

TEST(BpeTest, InputBytesPerTokenBoundsEveryEncoding) {
  TinyVocab v("gpt2", {"ab", "abc", "abcd"}, {{"a", "b"}, {"ab", "c"}, {"abc", "d"}});
  const int32_t special = v.Add("<|a-long-special-token|>", TokenType::kControl);
  auto tok = v.Build();
  // The longest piece: the special token's text (24 bytes).
  EXPECT_EQ(tok->max_input_bytes_per_token(), 24u);
  for (const std::string text : {"abcd abcdabcd", "xyzzy", "\xC3\xA9" "abcd", "<|a-long-special-token|>abcd"}) {
    for (const bool parse_special : {false, true}) {
      const std::vector<int32_t> ids = Enc(*tok, text, parse_special);
      EXPECT_GE(ids.size() * tok->max_input_bytes_per_token(), text.size()) << text;
    }
  }
  EXPECT_EQ(Enc(*tok, "<|a-long-special-token|>", true), (std::vector<int32_t>{special}));
  EXPECT_EQ(tok->CoveredBytes("abc\x04"), 4u);
  // A vocabulary without a token for byte 0x04: that byte encodes to nothing and is not counted.
  TinyVocab holes("gpt2", {}, {});
  holes.data.tokens[4] = "<unused-4>";
  holes.data.token_types[4] = TokenType::kUnused;
  auto holey = holes.Build();
  EXPECT_EQ(Enc(*holey, "a\x04\x04" "b"), (std::vector<int32_t>{B('a'), B('b')}));
  EXPECT_EQ(holey->CoveredBytes("a\x04\x04" "b"), 2u);
  EXPECT_EQ(holey->max_input_bytes_per_token(), 1u);
  // A merge result that is not a token can encode to nothing: no bound.
  TinyVocab gap("gpt2", {}, {{"\xC3", "\xA9"}});
  EXPECT_EQ(gap.Build()->max_input_bytes_per_token(), 0u);
}

TEST(BpeTest, MergesDoNotCrossPreTokenizerPieces) {
  TinyVocab v("gpt2", {"a ", " b", "ab"}, {{"a", " "}, {" ", "b"}, {"a", "b"}});
  auto tok = v.Build();
  // gpt2 pieces: "a", " b" -> the "a " merge never applies.
  EXPECT_EQ(Enc(*tok, "a b"), (std::vector<int32_t>{B('a'), 257}));
  EXPECT_EQ(Enc(*tok, "ab"), (std::vector<int32_t>{258}));
}

TEST(BpeTest, SmollmSplitsEveryDigit) {
  const std::vector<std::pair<std::string, std::string>> merges = {{"1", "2"}};
  TinyVocab smol("smollm", {"12"}, merges);
  TinyVocab gpt2("gpt2", {"12"}, merges);
  EXPECT_EQ(Enc(*smol.Build(), "12"), (std::vector<int32_t>{B('1'), B('2')}));
  EXPECT_EQ(Enc(*gpt2.Build(), "12"), (std::vector<int32_t>{256}));
}

TEST(BpeTest, SmollmPieces) {
  TinyVocab v("smollm", {}, {});
  auto tok = v.Build();
  EXPECT_EQ(Pieces(*tok, "I've 123 apples,  and\n\n  more"),
            (std::vector<std::string>{"I", "'ve", " ", "1", "2", "3", " apples", ",", " ", " and", "\n\n ",
                                      " more"}));
  // Non-ASCII digits (Nd, No) are \p{N}: each its own piece.
  EXPECT_EQ(Pieces(*tok, "x\xD9\xA3\xD9\xA4\xC2\xBD"),
            (std::vector<std::string>{"x", "\xD9\xA3", "\xD9\xA4", "\xC2\xBD"}));
  // Contractions are case-sensitive in the GPT-2 regex.
  EXPECT_EQ(Pieces(*tok, "IT'S it's"), (std::vector<std::string>{"IT", "'", "S", " it", "'s"}));
  // Trailing whitespace at the end of the text stays one piece.
  EXPECT_EQ(Pieces(*tok, "a   "), (std::vector<std::string>{"a", "   "}));
}

TEST(BpeTest, WhitespaceIsLlamaCppWhitespace) {
  TinyVocab v("gpt2", {}, {});
  auto tok = v.Build();
  // U+00A0 and U+0085 are whitespace: they join the trailing whitespace run.
  EXPECT_EQ(Pieces(*tok, "a\xC2\xA0 "), (std::vector<std::string>{"a", "\xC2\xA0 "}));
  EXPECT_EQ(Pieces(*tok, "a\xC2\x85 "), (std::vector<std::string>{"a", "\xC2\x85 "}));
  // U+180E (a format character) and U+001C are not (PCRE2's \s or isspace would say otherwise).
  EXPECT_EQ(Pieces(*tok, "a\xE1\xA0\x8E "), (std::vector<std::string>{"a", "\xE1\xA0\x8E", " "}));
  EXPECT_EQ(Pieces(*tok, "a\x1C "), (std::vector<std::string>{"a", "\x1C", " "}));
}

TEST(BpeTest, Llama3Pieces) {
  TinyVocab v("llama-bpe", {}, {});
  auto tok = v.Build();
  EXPECT_EQ(Pieces(*tok, "IT'S 12345 ok!!\n\nx"),
            (std::vector<std::string>{"IT", "'S", " ", "123", "45", " ok", "!!\n\n", "x"}));
  EXPECT_EQ(Pieces(*tok, "a \n  b"), (std::vector<std::string>{"a", " \n", " ", " b"}));
}

TEST(BpeTest, SpecialTokensNeedParseSpecial) {
  TinyVocab v("gpt2", {}, {});
  const int32_t im_start = v.Add("<|im_start|>", TokenType::kControl);
  auto tok = v.Build();
  EXPECT_EQ(Enc(*tok, "<|im_start|>hi", true), (std::vector<int32_t>{im_start, B('h'), B('i')}));
  const std::vector<int32_t> plain = Enc(*tok, "<|im_start|>hi", false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), im_start), 0);
  EXPECT_EQ(tok->Decode(plain), "<|im_start|>hi");
  // Text between and around special tokens is tokenized on its own.
  EXPECT_EQ(Enc(*tok, "a<|im_start|><|im_start|>b", true),
            (std::vector<int32_t>{B('a'), im_start, im_start, B('b')}));
}

TEST(BpeTest, UserDefinedTokensMatchWithoutParseSpecial) {
  TinyVocab v("gpt2", {}, {});
  const int32_t tool = v.Add("<tool>", TokenType::kUserDefined);
  auto tok = v.Build();
  EXPECT_EQ(Enc(*tok, "x<tool>y", false), (std::vector<int32_t>{B('x'), tool, B('y')}));
  EXPECT_EQ(tok->Decode(Enc(*tok, "x<tool>y")), "x<tool>y");  // user-defined tokens always render
}

TEST(BpeTest, LongerSpecialTokensWin) {
  TinyVocab v("gpt2", {}, {});
  const int32_t a = v.Add("<a>", TokenType::kControl);
  const int32_t ab = v.Add("<a><b>", TokenType::kControl);
  auto tok = v.Build();
  EXPECT_EQ(Enc(*tok, "<a><b><a>", true), (std::vector<int32_t>{ab, a}));
}

TEST(BpeTest, AddBos) {
  TinyVocab v("gpt2", {}, {});
  v.data.bos_id = v.Add("<s>", TokenType::kControl);
  auto tok = v.Build();
  auto ids = tok->Encode("x", {.add_bos = true, .parse_special = false});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{v.data.bos_id, B('x')}));
  auto empty = tok->Encode("", {.add_bos = true, .parse_special = false});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, (std::vector<int32_t>{v.data.bos_id}));
}

TEST(BpeTest, InvalidUtf8IsRejectedWithOffset) {
  TinyVocab v("gpt2", {}, {});
  auto tok = v.Build();
  struct Case {
    std::string text;
    std::string offset;
  };
  const Case cases[] = {
      {"ab\xFF" "cd", "offset 2"},           // never valid
      {"a\xC0\x80", "offset 1"},             // overlong NUL
      {"xyz\xED\xA0\x80", "offset 3"},       // UTF-16 surrogate
      {"\xE2\x82", "offset 0"},              // truncated
      {"ok\xF4\x90\x80\x80", "offset 2"},    // above U+10FFFF
      {"\x80", "offset 0"},                  // lone continuation byte
  };
  for (const Case& c : cases) {
    auto ids = tok->Encode(c.text, {});
    ASSERT_FALSE(ids.ok()) << c.offset;
    EXPECT_EQ(ids.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(ids.status().message().find(c.offset), std::string::npos) << ids.status().message();
  }
}

TEST(BpeTest, ControlTokensRenderOnlyWhenAsked) {
  TinyVocab v("gpt2", {}, {});
  const int32_t end = v.Add("<|im_end|>", TokenType::kControl);
  v.data.eos_id = end;
  auto tok = v.Build();
  const std::vector<int32_t> ids = {B('o'), B('k'), end};
  EXPECT_EQ(tok->Decode(ids), "ok");
  EXPECT_EQ(tok->Decode(ids, /*render_special=*/true), "ok<|im_end|>");
  EXPECT_TRUE(tok->IsControl(end));
  EXPECT_TRUE(tok->IsEndOfGeneration(end));
  EXPECT_FALSE(tok->IsEndOfGeneration(B('o')));
  EXPECT_EQ(tok->FindToken("<|im_end|>"), end);
  EXPECT_EQ(tok->FindToken("nope"), -1);
  EXPECT_EQ(tok->TokenBytes(-1), "");
  EXPECT_EQ(tok->TokenBytes(tok->vocab_size()), "");
}

TEST(BpeTest, DecodeUndoesByteMappingForAllBytes) {
  TinyVocab v("gpt2", {}, {});
  auto tok = v.Build();
  for (int b = 0; b < 256; ++b) EXPECT_EQ(tok->TokenBytes(b), std::string(1, static_cast<char>(b))) << b;
}

TEST(BpeTest, CreateRejectsBadVocabularies) {
  {
    TinyVocab v("no-such-pre", {}, {});
    auto t = Tokenizer::Create(v.data);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), StatusCode::kUnimplemented);
    EXPECT_NE(t.status().message().find("no-such-pre"), std::string::npos);
  }
  {
    TinyVocab v("gpt2", {}, {});
    v.data.token_types.pop_back();
    EXPECT_EQ(Tokenizer::Create(v.data).status().code(), StatusCode::kInvalidArgument);
  }
  {
    TinyVocab v("gpt2", {"a"}, {});  // "a" duplicates byte token 'a'
    EXPECT_EQ(Tokenizer::Create(v.data).status().code(), StatusCode::kInvalidArgument);
  }
  {
    TinyVocab v("gpt2", {}, {});
    v.data.eos_id = 100000;
    EXPECT_EQ(Tokenizer::Create(v.data).status().code(), StatusCode::kInvalidArgument);
  }
  {
    TinyVocab v("gpt2", {}, {});
    v.data.model = "bert";
    EXPECT_EQ(Tokenizer::Create(v.data).status().code(), StatusCode::kUnimplemented);
  }
}

TEST(BpeTest, ConcurrentEncodesAgree) {
  TinyVocab v("smollm", {"ab", "abab", " ab"}, {{"a", "b"}, {"ab", "ab"}, {" ", "ab"}});
  auto tok = v.Build();
  std::string text;
  for (int i = 0; i < 200; ++i) text += "abab ab 12 \xC3\xA9 ";
  const std::vector<int32_t> want = Enc(*tok, text);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (auto& g : got) {
    threads.emplace_back([&tok, &text, &g] {
      for (int i = 0; i < 20; ++i) g = *tok->Encode(text, {});
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

TEST(StreamDecoderTest, EmojiSplitAcrossTokensIsHeldBack) {
  // "😀" = F0 9F 98 80, split as "F0 9F" + "98" + "80".
  TinyVocab v("gpt2", {"\xF0\x9F"}, {{"\xF0", "\x9F"}});
  auto tok = v.Build();
  StreamDecoder dec(*tok);
  EXPECT_EQ(dec.Push(B('a')), "a");
  EXPECT_EQ(dec.Push(256), "");
  EXPECT_EQ(dec.Push(0x98), "");
  EXPECT_EQ(dec.Push(0x80), "\xF0\x9F\x98\x80");
  EXPECT_EQ(dec.Push(B('!')), "!");
  EXPECT_EQ(dec.Flush(), "");

  // Streaming the tokens of a text reproduces it exactly.
  const std::string text = "caf\xC3\xA9 \xF0\x9F\x98\x80\xF0\x9F\x98\x80 \xE4\xB8\xAD\xE6\x96\x87";
  std::string streamed;
  StreamDecoder dec2(*tok);
  for (const int32_t id : Enc(*tok, text)) streamed += dec2.Push(id);
  streamed += dec2.Flush();
  EXPECT_EQ(streamed, text);
}

TEST(StreamDecoderTest, FlushReplacesIncompleteSequence) {
  TinyVocab v("gpt2", {}, {});
  auto tok = v.Build();
  StreamDecoder dec(*tok);
  EXPECT_EQ(dec.Push(0xF0), "");
  EXPECT_EQ(dec.Push(0x9F), "");
  EXPECT_EQ(dec.Flush(), "\xEF\xBF\xBD");  // one U+FFFD for the truncated sequence
  EXPECT_EQ(dec.Flush(), "");
}

TEST(StreamDecoderTest, InvalidBytesBecomeReplacementCharacters) {
  TinyVocab v("gpt2", {}, {});
  auto tok = v.Build();
  StreamDecoder dec(*tok);
  EXPECT_EQ(dec.Push(0xFF), "\xEF\xBF\xBD");          // can never start a sequence
  EXPECT_EQ(dec.Push(0xE2), "");                       // may start one...
  EXPECT_EQ(dec.Push(B('x')), "\xEF\xBF\xBDx");        // ...but 'x' ends it
  EXPECT_EQ(dec.Push(0xED), "");
  EXPECT_EQ(dec.Push(0xA0), "\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate lead: ED, then A0, each replaced
  EXPECT_EQ(dec.Flush(), "");
}

TEST(StreamDecoderTest, ControlTokensFollowRenderSpecial) {
  TinyVocab v("gpt2", {}, {});
  const int32_t end = v.Add("<|im_end|>", TokenType::kControl);
  auto tok = v.Build();
  StreamDecoder plain(*tok);
  StreamDecoder special(*tok, /*render_special=*/true);
  EXPECT_EQ(plain.Push(end), "");
  EXPECT_EQ(special.Push(end), "<|im_end|>");
}

}  // namespace
}  // namespace slim
