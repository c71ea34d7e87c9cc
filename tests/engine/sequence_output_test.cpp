// SequenceOutput, the per-token text of a generated sequence shared by Engine::Generate and the
// server's scheduler: stop conditions without a tokenizer, text and stop strings with the
// default model's tokenizer, and the U+FFFD tail when the length limit splits a character.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/engine.h"
#include "tests/engine/engine_test_util.h"

namespace slim {
namespace {

// Pushes `ids` until one finishes; returns the text (each token's, then the rest) and the reason.
std::pair<std::string, FinishReason> PushAll(SequenceOutput& out, const std::vector<int32_t>& ids) {
  std::string text;
  for (int32_t id : ids) {
    SequenceOutput::Token t = out.Push(id);
    text += t.text;
    if (t.finish != FinishReason::kNone) return {text + t.rest, t.finish};
    EXPECT_TRUE(t.rest.empty());
  }
  return {text, FinishReason::kNone};
}

TEST(SequenceOutput, WithoutATokenizerStopsOnTokenIdsAndLength) {
  StopParams p;
  p.max_tokens = 3;
  p.stop_token_ids = {7};
  SequenceOutput a(nullptr, p);
  EXPECT_EQ(PushAll(a, {1, 7, 2}), std::make_pair(std::string(), FinishReason::kStopToken));
  EXPECT_EQ(a.generated(), 2);
  SequenceOutput b(nullptr, p);
  EXPECT_EQ(PushAll(b, {1, 2, 3, 4}), std::make_pair(std::string(), FinishReason::kLength));
}

TEST(SequenceOutput, TextStopStringsAndASplitCharacterAtTheLengthLimit) {
  auto e = testing::DefaultModelEngine(64, 1);
  ASSERT_TRUE(e);
  const std::vector<int32_t> ids = *e->Tokenize("Hello wonderful world", false);
  StopParams p;
  p.max_tokens = 100;
  SequenceOutput plain(e->tokenizer(), p);
  EXPECT_EQ(PushAll(plain, ids).first, "Hello wonderful world");
  p.stop_strings = {"derful w"};
  SequenceOutput stopped(e->tokenizer(), p);
  EXPECT_EQ(PushAll(stopped, ids), std::make_pair(std::string("Hello won"), FinishReason::kStopString));
  // A four-byte character is more than one byte-level token here; stopping after the first
  // leaves an incomplete UTF-8 sequence, released as U+FFFD.
  const std::vector<int32_t> smile = *e->Tokenize("\xF0\x9F\x99\x82", false);
  ASSERT_GT(smile.size(), 1u);
  StopParams one;
  one.max_tokens = 1;
  SequenceOutput cut(e->tokenizer(), one);
  EXPECT_EQ(PushAll(cut, smile), std::make_pair(std::string("\xEF\xBF\xBD"), FinishReason::kLength));
}

}  // namespace
}  // namespace slim
