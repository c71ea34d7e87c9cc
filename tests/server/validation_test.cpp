// Bad input: every malformed or out-of-range field of Generate / Tokenize / Abort gets
// INVALID_ARGUMENT naming the field, over real gRPC (including invalid UTF-8 sent as raw bytes,
// which protobuf itself cannot parse); the server keeps serving and counts each refusal once.
// Also the UTF-8 checker and the wire walker on their own.
#include <gtest/gtest.h>

#include <future>
#include <set>
#include <grpcpp/generic/generic_stub.h>

#include "server/proto_parse.h"
#include "server/request_builder.h"
#include "server_test_util.h"

namespace slim::server::testing {
namespace {

TEST(Utf8, FindsTheFirstInvalidSequence) {
  EXPECT_EQ(FindInvalidUtf8("plain ascii"), std::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), std::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("ab\xC3"), 2u);                 // truncated
  EXPECT_EQ(FindInvalidUtf8("a\xC0\x80"), 1u);              // overlong NUL
  EXPECT_EQ(FindInvalidUtf8("\xE0\x80\xAF"), 0u);           // overlong '/'
  EXPECT_EQ(FindInvalidUtf8("x\xED\xA0\x80"), 1u);          // UTF-16 surrogate
  EXPECT_EQ(FindInvalidUtf8("\xF4\x90\x80\x80"), 0u);       // above U+10FFFF
  EXPECT_EQ(FindInvalidUtf8("ok\x80"), 2u);                 // lone continuation byte
  EXPECT_EQ(FindInvalidUtf8("\xC3\x28"), 0u);               // bad continuation
}

// Serialized `m` with the bytes "@@@@" replaced by `with`.
std::string Patched(const google::protobuf::Message& m, const std::string& with) {
  std::string wire = m.SerializeAsString();
  const size_t at = wire.find("@@@@");
  EXPECT_NE(at, std::string::npos);
  wire.replace(at, 4, with);
  return wire;
}

TEST(Utf8, WireWalkerNamesNestedFields) {
  v1::GenerateRequest req;
  auto* chat = req.mutable_chat();
  chat->add_messages()->set_content("fine");
  chat->add_messages()->set_content("@@@@");
  req.mutable_stopping()->add_stop("x");
  Status s = CheckUtf8Fields(Patched(req, "\xFF\xFE!!"), v1::GenerateRequest::descriptor());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "chat.messages[1].content: invalid UTF-8 at byte 0");
  v1::GenerateRequest r2;
  r2.set_prompt("x");
  r2.mutable_stopping()->add_stop("a");
  r2.mutable_stopping()->add_stop("b@@@@");
  s = CheckUtf8Fields(Patched(r2, "\xC3\x28zz"), v1::GenerateRequest::descriptor());
  EXPECT_EQ(s.message(), "stopping.stop[1]: invalid UTF-8 at byte 1");
  EXPECT_TRUE(CheckUtf8Fields(r2.SerializeAsString(), v1::GenerateRequest::descriptor()).ok());
}

class Validation : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = StartServer(TestOptions()).release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    channel_ = Connect(server_->port());
    stub_ = v1::Inference::NewStub(channel_);
  }
  // Sends raw request bytes to `method` (a streaming method answered only by a status).
  grpc::Status RawCall(const std::string& method, const std::string& bytes) {
    grpc::GenericStub generic(channel_);
    grpc::ClientContext ctx;
    grpc::Slice slice(bytes);
    grpc::ByteBuffer req(&slice, 1), resp;
    std::promise<grpc::Status> done;
    generic.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp, [&](grpc::Status s) { done.set_value(s); });
    return done.get_future().get();
  }
  static InferenceServer* server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};
InferenceServer* Validation::server_ = nullptr;

v1::GenerateRequest Good() { return PromptRequest("Hello there", 4); }

// One bad request: how Good() is edited and a substring the error message must hold.
struct BadFieldCase {
  std::string name;
  std::function<void(v1::GenerateRequest*)> edit;
  std::string expect;
};

// The input and sampling checks of a GenerateRequest.
std::vector<BadFieldCase> InputAndSamplingCases() {
  const std::vector<int32_t> long_prompt(8193, 100);
  const std::vector<int32_t> near_full(8000, 100);
  return {
      {"no input", [](auto* r) { r->clear_prompt(); }, "input:"},
      {"empty prompt", [](auto* r) { r->set_prompt(""); }, "prompt: is empty"},
      // SmolLM2 has no token for these control characters: the text encodes to nothing.
      {"prompt without tokens", [](auto* r) { r->set_prompt("\x06\x04\x06"); }, "prompt: encodes to no tokens"},
      {"empty chat", [](auto* r) { r->mutable_chat(); }, "chat.messages: is empty"},
      {"bad role",
       [](auto* r) {
         auto* m = r->mutable_chat()->add_messages();
         m->set_role("robot");
         m->set_content("hi");
       },
       "chat.messages[0].role"},
      {"empty token ids", [](auto* r) { r->mutable_token_ids(); }, "token_ids.ids: is empty"},
      {"token id outside the vocabulary",
       [](auto* r) {
         r->mutable_token_ids()->add_ids(5);
         r->mutable_token_ids()->add_ids(49152);
       },
       "token_ids.ids[1]"},
      {"prompt over the context",
       [=](auto* r) { r->mutable_token_ids()->mutable_ids()->Assign(long_prompt.begin(), long_prompt.end()); },
       "prompt: 8193 tokens exceed the model context of 8192"},
      {"prompt + max_tokens over the context",
       [=](auto* r) {
         r->mutable_token_ids()->mutable_ids()->Assign(near_full.begin(), near_full.end());
         r->mutable_stopping()->set_max_tokens(500);
       },
       "stopping.max_tokens: prompt (8000 tokens) + max_tokens (500)"},
      {"negative max_tokens", [](auto* r) { r->mutable_stopping()->set_max_tokens(-1); }, "stopping.max_tokens"},
      {"temperature", [](auto* r) { r->mutable_sampling()->set_temperature(-0.5f); }, "sampling.temperature"},
      {"top_p", [](auto* r) { r->mutable_sampling()->set_top_p(1.5f); }, "sampling.top_p"},
      {"top_p zero", [](auto* r) { r->mutable_sampling()->set_top_p(0.0f); }, "sampling.top_p"},
      {"top_k", [](auto* r) { r->mutable_sampling()->set_top_k(1 << 20); }, "sampling.top_k"},
      {"min_p", [](auto* r) { r->mutable_sampling()->set_min_p(1.0f); }, "sampling.min_p"},
      {"repetition_penalty", [](auto* r) { r->mutable_sampling()->set_repetition_penalty(0.0f); },
       "sampling.repetition_penalty"},
      {"frequency_penalty", [](auto* r) { r->mutable_sampling()->set_frequency_penalty(3.0f); },
       "sampling.frequency_penalty"},
      {"presence_penalty", [](auto* r) { r->mutable_sampling()->set_presence_penalty(-3.0f); },
       "sampling.presence_penalty"},
      {"penalty_last_n", [](auto* r) { r->mutable_sampling()->set_penalty_last_n(-2); }, "sampling.penalty_last_n"},
      {"logprobs", [](auto* r) { r->mutable_sampling()->set_logprobs(21); }, "sampling.logprobs"},
  };
}

// The stopping, size, pruning and request-id checks.
std::vector<BadFieldCase> StopPruningAndIdCases(size_t too_many_bytes) {
  return {
      {"too many stop strings",
       [](auto* r) {
         for (int i = 0; i < 17; ++i) r->mutable_stopping()->add_stop("s" + std::to_string(i));
       },
       "stopping.stop: at most 16"},
      {"empty stop string", [](auto* r) { r->mutable_stopping()->add_stop(""); }, "stopping.stop[0]"},
      {"stop token id", [](auto* r) { r->mutable_stopping()->add_stop_token_ids(-1); }, "stopping.stop_token_ids[0]"},
      {"too many stop token ids",
       [](auto* r) {
         for (int i = 0; i < kMaxStopTokenIds + 1; ++i) r->mutable_stopping()->add_stop_token_ids(i);
       },
       "stopping.stop_token_ids: at most 64 ids, got 65"},
      {"prompt bytes that cannot fit the context",
       [=](auto* r) { r->set_prompt(std::string(too_many_bytes, 'a')); },
       "prompt: " + std::to_string(too_many_bytes) + " bytes need more than 8192 tokens (the model context"},
      {"chat content bytes that cannot fit the context",
       [=](auto* r) {
         for (int i = 0; i < 2; ++i) {
           auto* m = r->mutable_chat()->add_messages();
           m->set_role("user");
           m->set_content(std::string(too_many_bytes / 2 + 1, 'a'));
         }
       },
       "chat.messages[*].content: "},
      {"more chat messages than the context has tokens",
       [](auto* r) {
         for (int i = 0; i < 8193; ++i) {
           auto* m = r->mutable_chat()->add_messages();
           m->set_role("user");
         }
       },
       "chat.messages: 8193 messages need more than 8192 tokens"},
      {"explicit pruning without stages",
       [](auto* r) { r->mutable_pruning()->set_mode(v1::PruningOptions::MODE_EXPLICIT); }, "pruning.stages: required"},
      {"pruning stage layer",
       [](auto* r) {
         r->mutable_pruning()->set_mode(v1::PruningOptions::MODE_EXPLICIT);
         auto* s = r->mutable_pruning()->add_stages();
         s->set_layer(40);
         s->set_tokens(256);
       },
       "pruning.stages: pruning stage 0 (layer 40): layer must be in [1, 30)"},
      {"pruning stage without keep",
       [](auto* r) {
         r->mutable_pruning()->set_mode(v1::PruningOptions::MODE_EXPLICIT);
         r->mutable_pruning()->add_stages()->set_layer(5);
       },
       "pruning.stages[0]: set tokens or fraction"},
      {"pruning fraction", [](auto* r) {
         r->mutable_pruning()->set_mode(v1::PruningOptions::MODE_EXPLICIT);
         auto* s = r->mutable_pruning()->add_stages();
         s->set_layer(5);
         s->set_fraction(1.5);
       },
       "pruning.stages[0].fraction"},
      {"stages without explicit mode", [](auto* r) {
         r->mutable_pruning()->set_mode(v1::PruningOptions::MODE_OFF);
         r->mutable_pruning()->add_stages()->set_layer(5);
       },
       "pruning.stages: only allowed with MODE_EXPLICIT"},
      {"negative decode KV budget", [](auto* r) { r->mutable_pruning()->set_decode_kv_budget(-1); },
       "pruning.decode_kv_budget: must be >= 0"},
      {"unknown pruning mode", [](auto* r) { r->mutable_pruning()->set_mode(static_cast<v1::PruningOptions::Mode>(9)); },
       "pruning.mode: unknown value 9"},
      {"request id with a space", [](auto* r) { r->set_request_id("a b"); }, "request_id"},
      {"request id too long", [](auto* r) { r->set_request_id(std::string(200, 'x')); }, "request_id"},
  };
}

TEST_F(Validation, EveryBadFieldGetsInvalidArgumentNamingIt) {
  // The smallest text that cannot encode to 8192 tokens or fewer, by the tokenizer's own bound.
  const size_t per_token = server_->engine()->tokenizer()->max_input_bytes_per_token();
  ASSERT_GT(per_token, 0u);
  // Every field check of a GenerateRequest.
  std::vector<BadFieldCase> cases = InputAndSamplingCases();
  for (BadFieldCase& c : StopPruningAndIdCases(8192 * per_token + per_token)) cases.push_back(std::move(c));
  for (const BadFieldCase& c : cases) {
    SCOPED_TRACE(c.name);
    v1::GenerateRequest req = Good();
    c.edit(&req);
    StreamResult r = Stream(*stub_, req);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << r.status.error_message();
    EXPECT_NE(r.status.error_message().find(c.expect), std::string::npos) << r.status.error_message();
    EXPECT_EQ(r.started_count + r.chunks + r.finished_count, 0);
  }
  // Invalid UTF-8 cannot even be parsed by protobuf: send raw bytes.
  v1::GenerateRequest bad = Good();
  bad.set_prompt("Hi @@@@ there");
  grpc::Status s = RawCall("/sliminfer.v1.Inference/Generate", Patched(bad, "\xC3\x28\xA0\xA1"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "prompt: invalid UTF-8 at byte 3");
  v1::GenerateRequest bad_chat;
  auto* m = bad_chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("@@@@");
  s = RawCall("/sliminfer.v1.Inference/Generate", Patched(bad_chat, "\xED\xA0\x80!"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "chat.messages[0].content: invalid UTF-8 at byte 0");
  s = RawCall("/sliminfer.v1.Inference/Generate", std::string("\x12\x50garbage", 9));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("not a valid sliminfer.v1.GenerateRequest"), std::string::npos)
      << s.error_message();

  // Every refusal counted once; the server still serves.
  const size_t refused = cases.size() + 3;
  EXPECT_EQ(MetricValue(server_->metrics().Render(), "sliminfer_requests_total{outcome=\"invalid_argument\"}"),
            static_cast<double>(refused));
  StreamResult ok = Stream(*stub_, Good());
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.token_ids.size(), 4u);
  EXPECT_EQ(UsedKvBlocks(*server_), 0);
}

TEST_F(Validation, TokenizeAndAbortValidateToo) {
  grpc::ClientContext c1;
  v1::TokenizeResponse tr;
  grpc::Status s = stub_->Tokenize(&c1, v1::TokenizeRequest(), &tr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("input"), std::string::npos);
  v1::TokenizeRequest bad;
  bad.set_text("@@@@");
  s = RawCall("/sliminfer.v1.Inference/Tokenize", Patched(bad, "a\xFF\xFF!"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "text: invalid UTF-8 at byte 1");
  grpc::ClientContext c2;
  v1::AbortResponse ar;
  s = stub_->Abort(&c2, v1::AbortRequest(), &ar);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext c3;
  v1::AbortRequest unknown;
  unknown.set_request_id("nobody");
  EXPECT_EQ(stub_->Abort(&c3, unknown, &ar).error_code(), grpc::StatusCode::NOT_FOUND);
}

// Issue 16: server-assigned ids are unguessable (128 random bits in hex) and a client may not
// choose an id in the server's namespace, so it can neither collide with nor abort them.
TEST_F(Validation, ServerAssignedIdsAreRandomAndTheirPrefixIsReserved) {
  std::set<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    StreamResult r = Stream(*stub_, Good());
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    const std::string& id = r.started_event.request_id();
    ASSERT_EQ(id.size(), 4u + 32u) << id;
    EXPECT_EQ(id.substr(0, 4), "req-") << id;
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 4), std::string::npos) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 2u);
  v1::GenerateRequest req = Good();
  req.set_request_id("req-1");
  StreamResult r = Stream(*stub_, req);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << r.status.error_message();
  EXPECT_NE(r.status.error_message().find("request_id"), std::string::npos) << r.status.error_message();
  EXPECT_FALSE(r.started);
}

// Issue 16: a client value is quoted short in a status message, so a huge one still gets its
// own status code rather than the transport's metadata limit.
TEST_F(Validation, HugeClientValuesAreQuotedShortInStatusMessages) {
  const std::string huge(100000, 'x');
  v1::GenerateRequest req;
  auto* m = req.mutable_chat()->add_messages();
  m->set_role(huge);
  m->set_content("hi");
  req.mutable_stopping()->set_max_tokens(4);
  StreamResult r = Stream(*stub_, req);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << r.status.error_message().substr(0, 200);
  EXPECT_NE(r.status.error_message().find("chat.messages[0].role"), std::string::npos);
  EXPECT_NE(r.status.error_message().find("100000"), std::string::npos) << r.status.error_message();
  EXPECT_LT(r.status.error_message().size(), 400u);
  grpc::ClientContext ctx;
  v1::AbortRequest abort;
  abort.set_request_id(huge);
  v1::AbortResponse ar;
  grpc::Status s = stub_->Abort(&ctx, abort, &ar);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message().substr(0, 200);
  EXPECT_LT(s.error_message().size(), 400u);
  EXPECT_TRUE(Stream(*stub_, Good()).status.ok());
}

TEST_F(Validation, ServerLimitsAndDefaults) {
  const Engine& engine = *server_->engine();
  RequestLimits limits;
  limits.max_prompt_tokens = 5;
  limits.max_total_tokens = 20;
  limits.default_max_tokens = 64;
  limits.server_pruning = PruningMode::kDefault;
  v1::GenerateRequest req;
  req.set_prompt("one two three four five six seven eight");
  auto r = BuildGenerationRequest(req, engine, limits);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("--max-prompt-tokens"), std::string::npos) << r.status().message();
  req.set_prompt("Hi there");  // 2 tokens
  req.mutable_stopping()->set_max_tokens(19);
  r = BuildGenerationRequest(req, engine, limits);
  EXPECT_NE(r.status().message().find("--max-total-tokens"), std::string::npos) << r.status().message();
  // max_tokens 0: the server default, shrunk to what the limits leave.
  req.mutable_stopping()->set_max_tokens(0);
  r = BuildGenerationRequest(req, engine, limits);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stop.max_tokens, 20 - static_cast<int>(r->prompt.size()));
  EXPECT_EQ(r->pruning.mode, PruningMode::kDefault) << "MODE_UNSPECIFIED takes the server's --pruning";
  limits.max_total_tokens = 1000;
  r = BuildGenerationRequest(req, engine, limits);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stop.max_tokens, 64);
  req.mutable_pruning()->set_mode(v1::PruningOptions::MODE_OFF);
  EXPECT_EQ(BuildGenerationRequest(req, engine, limits)->pruning.mode, PruningMode::kOff);
}

TEST_F(Validation, AnOversizedMessageIsRefusedByTheTransport) {
  // --max-message-bytes defaults to 16 MiB; a 17 MiB prompt is refused before any parsing.
  v1::GenerateRequest req = Good();
  req.set_prompt(std::string(17 << 20, 'a'));
  StreamResult r = Stream(*stub_, req);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << r.status.error_message();
  EXPECT_TRUE(Stream(*stub_, Good()).status.ok());
}

}  // namespace
}  // namespace slim::server::testing
