// StopChecker: stop strings across token boundaries, held-back prefixes, several stop strings,
// max tokens, stop token ids, end-of-generation and ignore_eos, and Validate.
#include "engine/sampler/stop_checker.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace slim {
namespace {

struct Stream {
  std::vector<std::string> emitted;  // Step.text per push
  std::string text;                  // everything emitted, Flush included
  FinishReason finish = FinishReason::kNone;
  int32_t pushes = 0;                // tokens pushed until the finish
};

// Pushes `deltas` as tokens 100, 101, ... (none EOG) until a Step finishes, then flushes.
Stream Feed(const StopParams& params, const std::vector<std::string>& deltas) {
  EXPECT_TRUE(params.Validate(1000, 8192).ok());
  StopChecker sc(params);
  Stream r;
  for (size_t i = 0; i < deltas.size(); ++i) {
    const StopChecker::Step step = sc.Push(100 + static_cast<int32_t>(i), deltas[i], false);
    r.emitted.push_back(step.text);
    r.text += step.text;
    ++r.pushes;
    if (step.finish != FinishReason::kNone) {
      r.finish = step.finish;
      break;
    }
  }
  r.text += sc.Flush();
  return r;
}

StopParams Stops(std::vector<std::string> strings, int32_t max_tokens = 100) {
  StopParams p;
  p.max_tokens = max_tokens;
  p.stop_strings = std::move(strings);
  return p;
}

TEST(StopCheckerTest, NoStopsPassesTextThrough) {
  const Stream r = Feed(Stops({}), {"Hello", ",", " world"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"Hello", ",", " world"}));
  EXPECT_EQ(r.finish, FinishReason::kNone);
}

TEST(StopCheckerTest, StopStringSplitAcrossTokens) {
  const Stream r = Feed(Stops({"###"}), {"Hello #", "#", "# world", "never"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"Hello ", "", ""}));
  EXPECT_EQ(r.finish, FinishReason::kStopString);
  EXPECT_EQ(r.text, "Hello ");
  EXPECT_EQ(r.pushes, 3);
}

TEST(StopCheckerTest, StopStringInsideOneDeltaDropsTheRest) {
  const Stream r = Feed(Stops({"STOP"}), {"abc", "deSTOPfg"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"abc", "de"}));
  EXPECT_EQ(r.finish, FinishReason::kStopString);
  EXPECT_EQ(r.text, "abcde");
}

TEST(StopCheckerTest, PartialPrefixHeldThenReleased) {
  const Stream r = Feed(Stops({"STOP"}), {"ab S", "T", "x", " y"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"ab ", "", "STx", " y"}));
  EXPECT_EQ(r.finish, FinishReason::kNone);
  EXPECT_EQ(r.text, "ab STx y");
}

TEST(StopCheckerTest, HeldTextReturnedByFlush) {
  StopChecker sc(Stops({"</s>"}));
  EXPECT_EQ(sc.Push(1, "end </", false).text, "end ");
  EXPECT_EQ(sc.Flush(), "</");
  EXPECT_EQ(sc.Flush(), "");
}

TEST(StopCheckerTest, RepeatedPrefixCharactersAreHeldCorrectly) {
  // "aab" must still be found after "aaa": the held suffix is the longest prefix match.
  const Stream r = Feed(Stops({"aab"}), {"xa", "a", "a", "b!"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"x", "", "a", ""}));
  EXPECT_EQ(r.finish, FinishReason::kStopString);
  EXPECT_EQ(r.text, "xa");
}

TEST(StopCheckerTest, EarliestOfSeveralStopStringsWins) {
  const Stream r = Feed(Stops({"world", "lo w", "zzz"}), {"Hel", "lo wor", "ld"});
  EXPECT_EQ(r.finish, FinishReason::kStopString);
  EXPECT_EQ(r.text, "Hel");
  EXPECT_EQ(r.pushes, 2);
}

TEST(StopCheckerTest, HoldsLongestPrefixOverAllStopStrings) {
  // "User:" and "\n\n" both partially match; the longer held suffix covers both.
  const Stream r = Feed(Stops({"\n\n", "\nUser:"}), {"answer\n", "Us", "e", "r: hi"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"answer", "", "", ""}));
  EXPECT_EQ(r.finish, FinishReason::kStopString);
  EXPECT_EQ(r.text, "answer");
  const Stream r2 = Feed(Stops({"\n\n", "\nUser:"}), {"answer\n", "Us", "ed"});
  EXPECT_EQ(r2.emitted, (std::vector<std::string>{"answer", "", "\nUsed"}));
  EXPECT_EQ(r2.finish, FinishReason::kNone);
}

TEST(StopCheckerTest, MultiByteStopStringSplitInsideACharacter) {
  // "é" is 0xC3 0xA9; a byte-level tokenizer may split it. Text before is never cut mid-character.
  const Stream r = Feed(Stops({"é!"}), {"caf\xC3", "\xA9", "! more"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"caf", "", ""}));
  EXPECT_EQ(r.finish, FinishReason::kStopString);
  EXPECT_EQ(r.text, "caf");
}

TEST(StopCheckerTest, MaxTokensEmitsTheLastTokensText) {
  const Stream r = Feed(Stops({}, 3), {"a", "b", "c", "d"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(r.finish, FinishReason::kLength);
  EXPECT_EQ(r.pushes, 3);
}

TEST(StopCheckerTest, MaxTokensReleasesHeldText) {
  const Stream r = Feed(Stops({"STOP"}, 2), {"x", "yST"});
  EXPECT_EQ(r.emitted, (std::vector<std::string>{"x", "yST"}));
  EXPECT_EQ(r.finish, FinishReason::kLength);
}

TEST(StopCheckerTest, StopStringOnTheLastAllowedTokenIsAStop) {
  const Stream r = Feed(Stops({"STOP"}, 2), {"x", "ySTOP"});
  EXPECT_EQ(r.text, "xy");
  EXPECT_EQ(r.finish, FinishReason::kStopString);
}

TEST(StopCheckerTest, StopTokenIdTextNotEmitted) {
  StopParams p = Stops({"<end>"});
  p.stop_token_ids = {7, 9};
  StopChecker sc(p);
  EXPECT_EQ(sc.Push(1, "hi <e", false).text, "hi ");
  const StopChecker::Step s = sc.Push(9, "STOPTEXT", false);
  EXPECT_EQ(s.finish, FinishReason::kStopToken);
  EXPECT_EQ(s.text, "<e");  // held text cannot become a stop string any more
  EXPECT_EQ(sc.Flush(), "");
  EXPECT_EQ(sc.generated(), 2);
}

TEST(StopCheckerTest, EndOfGeneration) {
  StopChecker sc(Stops({}));
  EXPECT_EQ(sc.Push(5, "Hi", false).text, "Hi");
  const StopChecker::Step s = sc.Push(2, "<|im_end|>", true);
  EXPECT_EQ(s.finish, FinishReason::kEndOfGeneration);
  EXPECT_EQ(s.text, "");
  // Pushing after the finish is a no-op.
  const StopChecker::Step after = sc.Push(5, "more", false);
  EXPECT_EQ(after.finish, FinishReason::kNone);
  EXPECT_EQ(after.text, "");
  EXPECT_EQ(sc.generated(), 2);
}

TEST(StopCheckerTest, IgnoreEosKeepsGoing) {
  StopParams p = Stops({}, 3);
  p.ignore_eos = true;
  StopChecker sc(p);
  EXPECT_EQ(sc.Push(5, "Hi", false).finish, FinishReason::kNone);
  const StopChecker::Step s = sc.Push(2, "<eos>", true);
  EXPECT_EQ(s.finish, FinishReason::kNone);
  EXPECT_EQ(s.text, "<eos>");
  EXPECT_EQ(sc.Push(5, "!", false).finish, FinishReason::kLength);
}

TEST(StopCheckerTest, IgnoreEosDoesNotIgnoreStopIds) {
  StopParams p = Stops({});
  p.ignore_eos = true;
  p.stop_token_ids = {2};
  StopChecker sc(p);
  EXPECT_EQ(sc.Push(2, "<eos>", true).finish, FinishReason::kStopToken);
}

TEST(StopCheckerTest, FinishReasonNames) {
  EXPECT_STREQ(FinishReasonName(FinishReason::kLength), "length");
  EXPECT_STREQ(FinishReasonName(FinishReason::kStopToken), "stop_token");
  EXPECT_STREQ(FinishReasonName(FinishReason::kStopString), "stop");
  EXPECT_STREQ(FinishReasonName(FinishReason::kEndOfGeneration), "eos");
}

void ExpectInvalid(const StopParams& p, const std::string& needle) {
  const Status st = p.Validate(1000, 8192);
  ASSERT_FALSE(st.ok()) << needle;
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
}

TEST(StopParamsTest, Validate) {
  StopParams ok = Stops({std::string(256, 'x')}, 8192);
  ok.stop_token_ids = {0, 999};
  EXPECT_TRUE(ok.Validate(1000, 8192).ok());

  ExpectInvalid(Stops({}, 0), "max_tokens must be in [1, 8192], got 0");
  ExpectInvalid(Stops({}, 8193), "max_tokens must be in [1, 8192], got 8193");
  StopParams ids = Stops({});
  ids.stop_token_ids = {5, 1000};
  ExpectInvalid(ids, "stop_token_ids[1] must be in [0, 1000), got 1000");
  ids.stop_token_ids = {-1};
  ExpectInvalid(ids, "stop_token_ids[0]");
  ExpectInvalid(Stops({"a", ""}), "stop_strings[1]");
  ExpectInvalid(Stops({std::string(257, 'x')}), "got 257");
  ExpectInvalid(Stops(std::vector<std::string>(17, "s")), "at most 16");
  EXPECT_TRUE(Stops(std::vector<std::string>(16, "s")).Validate(1000, 8192).ok());
}

}  // namespace
}  // namespace slim
