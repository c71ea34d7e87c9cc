// OpenAI request bodies -> GenerateRequest (no server): JSON types, OpenAI-only options, the
// renaming of builder messages to OpenAI parameters, and the HTTP status of each code.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/openai_http.h"
#include "server/openai_request.h"

namespace slim::server {
namespace {

using json = nlohmann::json;

TEST(OpenAiRequest, ChatFieldsMapOntoTheGenerateRequest) {
  const json body = json::parse(R"({
    "model": "m", "stream": true, "stream_options": {"include_usage": true},
    "messages": [{"role": "developer", "content": "Be brief."},
                 {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
    "max_completion_tokens": 7, "max_tokens": 99, "temperature": 0.5, "top_p": 0.9, "seed": -1, "stop": "END",
    "presence_penalty": 0.1, "frequency_penalty": 0.2, "logprobs": true, "top_logprobs": 3, "n": 1, "user": "u",
    "top_k": -1, "min_p": 0.05, "repetition_penalty": 1.1, "ignore_eos": true, "stop_token_ids": [2],
    "pruning": {"stages": [{"layer": 10, "fraction": 0.5}, {"layer": 20, "tokens": 64}]}})");
  StatusOr<OpenAiRequest> r = ParseOpenAiRequest(body, OpenAiEndpoint::kChat);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->stream && r->include_usage && r->logprobs);
  EXPECT_EQ(r->top_logprobs, 3);
  const auto& g = r->generate;
  ASSERT_EQ(g.chat().messages_size(), 2);
  EXPECT_EQ(g.chat().messages(0).role(), "system");
  EXPECT_EQ(g.chat().messages(1).content(), "Hi there");
  EXPECT_EQ(g.stopping().max_tokens(), 7);  // max_completion_tokens wins
  EXPECT_EQ(g.stopping().stop(0), "END");
  EXPECT_TRUE(g.stopping().ignore_eos());
  EXPECT_EQ(g.stopping().stop_token_ids(0), 2);
  EXPECT_FLOAT_EQ(g.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(g.sampling().top_p(), 0.9f);
  EXPECT_EQ(g.sampling().seed(), ~uint64_t{0});
  EXPECT_EQ(g.sampling().top_k(), 0);
  EXPECT_EQ(g.sampling().logprobs(), 3);
  EXPECT_FLOAT_EQ(g.sampling().repetition_penalty(), 1.1f);
  EXPECT_EQ(g.pruning().mode(), sliminfer::v1::PruningOptions::MODE_EXPLICIT);
  ASSERT_EQ(g.pruning().stages_size(), 2);
  EXPECT_DOUBLE_EQ(g.pruning().stages(0).fraction(), 0.5);
  EXPECT_EQ(g.pruning().stages(1).tokens(), 64);
}

TEST(OpenAiRequest, CompletionPromptsAreTextOrTokenIds) {
  auto parse = [](const std::string& s) { return ParseOpenAiRequest(json::parse(s), OpenAiEndpoint::kCompletions); };
  EXPECT_EQ(parse(R"({"prompt": "abc"})")->generate.prompt(), "abc");
  EXPECT_EQ(parse(R"({"prompt": ["abc"]})")->generate.prompt(), "abc");
  EXPECT_EQ(parse(R"({"prompt": [1, 2, 3]})")->generate.token_ids().ids_size(), 3);
  EXPECT_EQ(parse(R"({"prompt": [[1, 2]]})")->generate.token_ids().ids_size(), 2);
  EXPECT_EQ(parse(R"({"prompt": "a", "logprobs": 2})")->generate.sampling().logprobs(), 2);
  EXPECT_FALSE(parse(R"({"prompt": "a"})")->generate.sampling().has_logprobs());
}

TEST(OpenAiRequest, WrongTypesAndUnsupportedOptionsNameTheirParam) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"messages": "hi"})", "messages"},
      {R"({})", "messages"},
      {R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "messages[0].content[0].type"},
      {R"({"messages": [], "temperature": "hot"})", "temperature"},
      {R"({"messages": [], "n": 3})", "n"},
      {R"({"messages": [], "max_tokens": 0})", "max_tokens"},
      {R"({"messages": [], "top_logprobs": 2})", "top_logprobs"},
      {R"({"messages": [], "top_logprobs": 50, "logprobs": true})", "top_logprobs"},
      {R"({"messages": [], "stop": 3})", "stop"},
      {R"({"messages": [], "stream_options": {"include_usage": true}})", "stream_options"},
      {R"({"messages": [], "tools": [{"type": "function"}]})", "tools"},
      {R"({"messages": [], "pruning": {"mode": "some"}})", "pruning.mode"},
      {R"({"messages": [], "pruning": {"stages": [{"layer": 3}]}})", "pruning.stages[0]"},
      {R"({"messages": [], "seed": 1.5})", "seed"},
  };
  for (const auto& [body, param] : cases) {
    StatusOr<OpenAiRequest> r = ParseOpenAiRequest(json::parse(body), OpenAiEndpoint::kChat);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(ToOpenAiParam(r.status().message(), OpenAiEndpoint::kChat).param, param) << r.status().ToString();
  }
  StatusOr<OpenAiRequest> batch = ParseOpenAiRequest(json::parse(R"({"prompt": ["a", "b"]})"),
                                                     OpenAiEndpoint::kCompletions);
  ASSERT_FALSE(batch.ok());
  EXPECT_NE(batch.status().message().find("several prompts"), std::string::npos);
}

TEST(OpenAiRequest, BuilderMessagesBecomeOpenAiParams) {
  auto chat = [](const std::string& m) { return ToOpenAiParam(m, OpenAiEndpoint::kChat); };
  auto cmpl = [](const std::string& m) { return ToOpenAiParam(m, OpenAiEndpoint::kCompletions); };
  EXPECT_EQ(chat("sampling.top_p must be in (0, 1], got 1.5").param, "top_p");
  EXPECT_EQ(chat("sampling.top_p must be in (0, 1], got 1.5").message, "top_p must be in (0, 1], got 1.5");
  EXPECT_EQ(chat("stopping.max_tokens: prompt (9 tokens) + max_tokens (9000) exceeds").param, "max_tokens");
  EXPECT_EQ(chat("stopping: max_tokens must be in [1, 8192], got 0").param, "max_tokens");
  EXPECT_EQ(chat("stopping.stop[2]: must be 1 to 256 bytes").param, "stop");
  EXPECT_EQ(chat("chat.messages[1].role: must be system, user or assistant").param, "messages[1].role");
  EXPECT_EQ(chat("prompt: 9000 tokens exceed the model context of 8192").param, "messages");
  EXPECT_EQ(cmpl("prompt: 9000 tokens exceed the model context of 8192").param, "prompt");
  EXPECT_EQ(cmpl("token_ids.ids[3]: 99999 is outside the vocabulary").param, "prompt[3]");
  EXPECT_EQ(chat("sampling.logprobs must be in [0, 20], got 30").param, "top_logprobs");
  EXPECT_EQ(cmpl("sampling.logprobs must be in [0, 20], got 30").param, "logprobs");
  EXPECT_EQ(chat("pruning.stages[0].fraction: must be in (0, 1)").param, "pruning.stages[0].fraction");
}

TEST(OpenAiRequest, HttpStatusOfEachCode) {
  EXPECT_EQ(HttpStatusFor(StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusFor(StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusFor(StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(StatusCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusFor(StatusCode::kInternal), 500);
}

}  // namespace
}  // namespace slim::server
