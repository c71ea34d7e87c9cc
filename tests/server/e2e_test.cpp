// End to end over loopback gRPC with the real default model: the stream equals the engine's own
// Generate output; 16 concurrent streams complete with batched decode; cancel, deadline while
// queued and Abort end their streams with the right status, free their KV blocks and leave the
// other streams alone; a flood beyond the queue is refused for the excess only; calls before
// the model is loaded are UNAVAILABLE; Tokenize, GetModelInfo, health and pruning summaries.
#include <gtest/gtest.h>

#include <fstream>

#include <atomic>
#include <future>
#include <thread>

#include <grpcpp/generic/generic_stub.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "server_test_util.h"

namespace slim::server::testing {
namespace {

using namespace std::chrono_literals;

class ServerE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ServerOptions o = TestOptions();
    o.max_seqs = 16;
    o.max_queue = 64;
    server_ = StartServer(o).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Inference::NewStub(Connect(server_->port()));
  }
  static InferenceServer* server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};
InferenceServer* ServerE2E::server_ = nullptr;

std::unique_ptr<Engine> ReferenceEngine() {
  EngineOptions o;
  o.model = SLIM_DEFAULT_MODEL;
  o.kv_tokens = 4096;
  o.backend.threads = 2;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(*e) : nullptr;
}

TEST_F(ServerE2E, StreamEqualsTheEnginesOwnOutput) {
  auto engine = ReferenceEngine();
  ASSERT_NE(engine, nullptr);
  struct Case {
    std::string name;
    bool chat;
    float temperature;
    uint64_t seed;
  };
  for (const Case& c : {Case{"raw greedy", false, 0.0f, 0}, Case{"chat greedy", true, 0.0f, 0},
                        Case{"chat sampled seed 7", true, 0.9f, 7}}) {
    SCOPED_TRACE(c.name);
    const std::string prompt = "Write one sentence about the sea.";
    std::vector<int32_t> ids = c.chat ? *engine->TokenizeChat({{"user", prompt}}) : *engine->Tokenize(prompt, false);
    SamplingParams sp;
    sp.temperature = c.temperature;
    sp.top_p = c.temperature > 0 ? 0.95f : 1.0f;
    sp.seed = c.seed;
    StopParams st;
    st.max_tokens = 20;
    auto ref = engine->Generate(ids, sp, st);
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();

    v1::GenerateRequest req;
    if (c.chat) {
      auto* m = req.mutable_chat()->add_messages();
      m->set_role("user");
      m->set_content(prompt);
    } else {
      req.set_prompt(prompt);
    }
    req.mutable_sampling()->set_temperature(c.temperature);
    if (c.temperature > 0) req.mutable_sampling()->set_top_p(0.95f);
    req.mutable_sampling()->set_seed(c.seed);
    req.mutable_stopping()->set_max_tokens(20);
    StreamResult r = Stream(*stub_, req);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.token_ids, ref->token_ids);
    EXPECT_EQ(r.text, ref->text);
    EXPECT_EQ(r.started_count, 1);
    EXPECT_EQ(r.finished_count, 1);
    EXPECT_EQ(r.started_event.prompt_tokens(), static_cast<int>(ids.size()));
    EXPECT_EQ(r.finished.usage().completion_tokens(), static_cast<int>(ref->token_ids.size()));
    EXPECT_EQ(r.finished.usage().prompt_tokens(), static_cast<int>(ids.size()));
    const bool eos = ref->finish == FinishReason::kEndOfGeneration;
    EXPECT_EQ(r.finished.reason(), eos ? v1::FINISH_REASON_END_OF_GENERATION : v1::FINISH_REASON_LENGTH);
    EXPECT_GT(r.finished.timings().ttft_ms(), 0.0);
    EXPECT_GE(r.finished.timings().e2e_ms(), r.finished.timings().ttft_ms());
    EXPECT_GT(r.finished.timings().prefill_ms(), 0.0);
  }
}

TEST_F(ServerE2E, StopStringEndsTheStreamLikeTheEngine) {
  auto engine = ReferenceEngine();
  ASSERT_NE(engine, nullptr);
  const std::string prompt = "Count: one, two, three, four,";
  std::vector<int32_t> ids = *engine->Tokenize(prompt, false);
  StopParams st;
  st.max_tokens = 24;
  auto full = engine->Generate(ids, SamplingParams{}, st);
  ASSERT_TRUE(full.ok());
  ASSERT_GE(full->text.size(), 6u);
  // A stop string from the middle of the greedy continuation.
  const std::string stop = full->text.substr(full->text.size() / 2, 3);
  st.stop_strings = {stop};
  auto ref = engine->Generate(ids, SamplingParams{}, st);
  ASSERT_TRUE(ref.ok());
  v1::GenerateRequest req = PromptRequest(prompt, 24, false);
  req.mutable_stopping()->add_stop(stop);
  const std::string before = server_->metrics().Render();
  StreamResult r = Stream(*stub_, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.text, ref->text);
  EXPECT_EQ(r.token_ids, ref->token_ids);
  EXPECT_EQ(r.finished.reason(), v1::FINISH_REASON_STOP_STRING);
  EXPECT_EQ(r.text.find(stop), std::string::npos);
  // The completed request is counted by its finish reason, its token counts in the histograms.
  auto delta = [&](const std::string& series) {
    return MetricValue(server_->metrics().Render(), series) - MetricValue(before, series);
  };
  EXPECT_TRUE(WaitFor([&] { return delta("sliminfer_request_success_total{finish_reason=\"stop\"}") == 1; }));
  EXPECT_EQ(delta("sliminfer_request_success_total{finish_reason=\"length\"}"), 0);
  EXPECT_EQ(delta("sliminfer_request_prompt_tokens_count"), 1);
  EXPECT_EQ(delta("sliminfer_request_prompt_tokens_sum"), static_cast<double>(ids.size()));
  EXPECT_EQ(delta("sliminfer_request_generation_tokens_sum"), static_cast<double>(r.token_ids.size()));
}

TEST_F(ServerE2E, SixteenConcurrentStreamsCompleteWithBatchedDecode) {
  const std::string before = server_->metrics().Render();
  const double batches0 = MetricValue(before, "sliminfer_decode_batch_size_count");
  const double batch_sum0 = MetricValue(before, "sliminfer_decode_batch_size_sum");
  const double le1_0 = MetricValue(before, "sliminfer_decode_batch_size_bucket{le=\"1\"}");
  std::vector<std::future<StreamResult>> calls;
  for (int i = 0; i < 16; ++i) {
    calls.push_back(std::async(std::launch::async, [this, i] {
      return Stream(*stub_, PromptRequest("Story number " + std::to_string(i) + ":", 6));
    }));
  }
  int ok = 0;
  for (auto& f : calls) {
    StreamResult r = f.get();
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.token_ids.size(), 6u);
    EXPECT_EQ(r.finished_count, 1);
    ok += r.status.ok();
  }
  EXPECT_EQ(ok, 16);
  // Through the real /metrics endpoint: more decode-step sequences than steps, and steps with
  // more than one sequence.
  const std::string after = HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_FALSE(after.empty());
  const double batches = MetricValue(after, "sliminfer_decode_batch_size_count") - batches0;
  const double batch_sum = MetricValue(after, "sliminfer_decode_batch_size_sum") - batch_sum0;
  const double single = MetricValue(after, "sliminfer_decode_batch_size_bucket{le=\"1\"}") - le1_0;
  EXPECT_GT(batch_sum / batches, 1.5) << after;
  EXPECT_LT(single, batches);
  EXPECT_EQ(server_->scheduler()->Stats().max_decode_batch > 1, true);
  EXPECT_TRUE(WaitFor([&] { return UsedKvBlocks(*server_) == 0; }));
}

// B's tokens alone, then B again while A is ended by `end_a`; B must not notice.
void CheckOthersUndisturbed(v1::Inference::Stub& stub, InferenceServer& server, const std::string& a_id,
                            const std::function<void(grpc::ClientContext*)>& end_a, grpc::StatusCode expected) {
  const v1::GenerateRequest b_req = PromptRequest("The history of the printing press", 20);
  const StreamResult alone = Stream(stub, b_req);
  ASSERT_TRUE(alone.status.ok());
  ASSERT_TRUE(WaitFor([&] { return UsedKvBlocks(server) == 0; }));

  std::promise<void> a_running;
  std::atomic<bool> signalled{false};
  v1::GenerateRequest a_req = PromptRequest("A long tale of a lighthouse keeper", 200);
  a_req.set_request_id(a_id);
  auto a = std::async(std::launch::async, [&] {
    return Stream(stub, a_req, 0, [&](const StreamResult& r, grpc::ClientContext* ctx) {
      if (r.token_ids.size() >= 2 && !signalled.exchange(true)) {
        a_running.set_value();
        if (end_a) end_a(ctx);
      }
    });
  });
  a_running.get_future().wait();
  auto b = std::async(std::launch::async, [&] { return Stream(stub, b_req); });
  const StreamResult ra = a.get();
  const StreamResult rb = b.get();
  EXPECT_EQ(ra.status.error_code(), expected) << ra.status.error_message();
  EXPECT_EQ(ra.finished_count, 0);
  EXPECT_LT(ra.token_ids.size(), 200u);
  ASSERT_TRUE(rb.status.ok()) << rb.status.error_message();
  EXPECT_EQ(rb.token_ids, alone.token_ids);
  EXPECT_EQ(rb.text, alone.text);
  EXPECT_TRUE(WaitFor([&] { return UsedKvBlocks(server) == 0; })) << UsedKvBlocks(server) << " KV blocks still used";
  EXPECT_TRUE(WaitFor([&] { return server.scheduler()->live() == 0; }));
}

TEST_F(ServerE2E, CancelMidStreamFreesKvAndSparesOthers) {
  const double before = MetricValue(server_->metrics().Render(), "sliminfer_requests_total{outcome=\"cancelled\"}");
  CheckOthersUndisturbed(*stub_, *server_, "cancel-me", [](grpc::ClientContext* ctx) { ctx->TryCancel(); },
                         grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitFor([&] {
    return MetricValue(server_->metrics().Render(), "sliminfer_requests_total{outcome=\"cancelled\"}") == before + 1;
  }));
}

TEST_F(ServerE2E, AbortEndsTheStreamWithAbortedAndFreesKv) {
  auto channel = Connect(server_->port());
  CheckOthersUndisturbed(
      *stub_, *server_, "abort-me",
      [&](grpc::ClientContext*) {
        auto stub = v1::Inference::NewStub(channel);
        grpc::ClientContext ctx;
        v1::AbortRequest req;
        req.set_request_id("abort-me");
        v1::AbortResponse resp;
        grpc::Status s = stub->Abort(&ctx, req, &resp);
        EXPECT_TRUE(s.ok()) << s.error_message();
      },
      grpc::StatusCode::ABORTED);
  grpc::ClientContext ctx;
  v1::AbortRequest req;
  req.set_request_id("abort-me");
  v1::AbortResponse resp;
  EXPECT_EQ(stub_->Abort(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

// Issue 16: once a generation has ended, its id is gone (Abort: NOT_FOUND) even while the
// client has not read its last messages; and a client that goes away before Finished reached
// it is counted cancelled, not ok. A small client window holds the server's writes back.
TEST_F(ServerE2E, AfterTheEndAbortIsNotFoundAndAnUnreadEndCountsAsCancelled) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server_->port()),
                                           grpc::InsecureChannelCredentials(), args);
  auto stub = v1::Inference::NewStub(channel);
  const std::string metrics0 = server_->metrics().Render();
  const double ok0 = MetricValue(metrics0, "sliminfer_requests_total{outcome=\"ok\"}");
  const double cancelled0 = MetricValue(metrics0, "sliminfer_requests_total{outcome=\"cancelled\"}");
  v1::GenerateRequest req = PromptRequest("Tell me a long story about a dragon", 120);
  req.set_request_id("unread-end");
  req.mutable_sampling()->set_logprobs(20);  // ~200 bytes a token: far more than the window
  grpc::ClientContext ctx;
  auto reader = stub->Generate(&ctx, req);
  v1::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  ASSERT_TRUE(resp.has_started());
  // The generation ends on the server while most of its messages are still unwritten.
  ASSERT_TRUE(WaitFor([&] { return server_->scheduler()->live() == 0; }, std::chrono::seconds(60)));
  ASSERT_EQ(MetricValue(server_->metrics().Render(), "sliminfer_requests_total{outcome=\"ok\"}"), ok0)
      << "the call must not have finished yet";
  grpc::ClientContext actx;
  v1::AbortRequest abort;
  abort.set_request_id("unread-end");
  v1::AbortResponse ar;
  EXPECT_EQ(stub_->Abort(&actx, abort, &ar).error_code(), grpc::StatusCode::NOT_FOUND);
  ctx.TryCancel();
  while (reader->Read(&resp)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitFor([&] {
    return MetricValue(server_->metrics().Render(), "sliminfer_requests_total{outcome=\"cancelled\"}") ==
           (cancelled0 < 0 ? 0 : cancelled0) + 1;
  }));
  EXPECT_EQ(MetricValue(server_->metrics().Render(), "sliminfer_requests_total{outcome=\"ok\"}"), ok0);
}

TEST_F(ServerE2E, DuplicateLiveRequestIdIsRefused) {
  std::promise<void> running;
  std::atomic<bool> once{false};
  v1::GenerateRequest req = PromptRequest("Twice", 40);
  req.set_request_id("same-id");
  auto a = std::async(std::launch::async, [&] {
    return Stream(*stub_, req, 0, [&](const StreamResult&, grpc::ClientContext*) {
      if (!once.exchange(true)) running.set_value();
    });
  });
  running.get_future().wait();
  StreamResult dup = Stream(*stub_, req);
  EXPECT_EQ(dup.status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_TRUE(a.get().status.ok());
}

TEST_F(ServerE2E, PruningDefaultReportsKeptTokensAndLessKv) {
  // ~1100 tokens of real text so the default schedule applies.
  std::string text;
  while (text.size() < 5000) text += "The keeper climbed the stairs of the lighthouse every evening to light the lamp. ";
  v1::GenerateRequest req = PromptRequest(text, 4);
  req.mutable_pruning()->set_mode(v1::PruningOptions::MODE_DEFAULT);
  StreamResult pruned = Stream(*stub_, req);
  ASSERT_TRUE(pruned.status.ok()) << pruned.status.error_message();
  const v1::PruningSummary& p = pruned.finished.pruning();
  EXPECT_TRUE(p.applied());
  ASSERT_GT(p.stages_size(), 0);
  EXPECT_LT(p.stages(0).tokens_kept(), p.prompt_tokens());
  EXPECT_LT(p.kv_bytes(), p.dense_kv_bytes());
  EXPECT_EQ(pruned.started_event.pruning().stages_size(), p.stages_size());
  req.mutable_pruning()->set_mode(v1::PruningOptions::MODE_OFF);
  StreamResult dense = Stream(*stub_, req);
  ASSERT_TRUE(dense.status.ok());
  EXPECT_FALSE(dense.finished.pruning().applied());
  EXPECT_EQ(dense.finished.pruning().kv_bytes(), dense.finished.pruning().dense_kv_bytes());
  const std::string m = server_->metrics().Render();
  EXPECT_GT(MetricValue(m, "sliminfer_pruned_prompt_tokens_total"), 0);
}

TEST_F(ServerE2E, LogprobsArrivePerTokenWhenAsked) {
  v1::GenerateRequest req = PromptRequest("The sun rises in the", 5);
  req.mutable_sampling()->set_logprobs(3);
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, req);
  v1::GenerateResponse resp;
  int tokens = 0;
  while (reader->Read(&resp)) {
    if (!resp.has_chunk()) continue;
    const v1::TokenChunk& c = resp.chunk();
    ASSERT_EQ(c.logprobs_size(), c.token_ids_size());
    for (int i = 0; i < c.logprobs_size(); ++i) {
      EXPECT_EQ(c.logprobs(i).token_id(), c.token_ids(i));
      EXPECT_LE(c.logprobs(i).logprob(), 0.0f);
      ASSERT_EQ(c.logprobs(i).top_size(), 3);
      // Greedy: the sampled token is the most likely one.
      EXPECT_EQ(c.logprobs(i).top(0).token_id(), c.token_ids(i));
      EXPECT_GE(c.logprobs(i).top(0).logprob(), c.logprobs(i).top(1).logprob());
      ++tokens;
    }
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(tokens, 5);
  // Without the option no logprobs are sent.
  StreamResult plain = Stream(*stub_, PromptRequest("The sun rises in the", 2));
  EXPECT_TRUE(plain.status.ok());
}

TEST_F(ServerE2E, TokenizeModelInfoHealthAndReflection) {
  grpc::ClientContext c1;
  v1::TokenizeRequest tr;
  tr.set_text("Hello world");
  v1::TokenizeResponse tresp;
  ASSERT_TRUE(stub_->Tokenize(&c1, tr, &tresp).ok());
  EXPECT_EQ(std::vector<int32_t>(tresp.token_ids().begin(), tresp.token_ids().end()),
            *server_->engine()->Tokenize("Hello world", false));
  // A text that cannot fit the context is refused before it is encoded.
  grpc::ClientContext c1b;
  const size_t per_token = server_->engine()->tokenizer()->max_input_bytes_per_token();
  tr.set_text(std::string(8193 * per_token, 'a'));
  const grpc::Status big = stub_->Tokenize(&c1b, tr, &tresp);
  EXPECT_EQ(big.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(big.error_message().find("text: " + std::to_string(8193 * per_token) +
                                     " bytes need more than 8192 tokens (the model context"),
            std::string::npos)
      << big.error_message();
  grpc::ClientContext c2;
  v1::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(&c2, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.n_layers(), 30);
  EXPECT_EQ(info.context_length(), 8192);
  EXPECT_EQ(info.max_seqs(), 16);
  EXPECT_EQ(info.kv_block_tokens(), 64);
  EXPECT_TRUE(info.has_chat_template());
  auto health = grpc::health::v1::Health::NewStub(Connect(server_->port()));
  grpc::ClientContext c3;
  grpc::health::v1::HealthCheckRequest hr;
  grpc::health::v1::HealthCheckResponse hresp;
  ASSERT_TRUE(health->Check(&c3, hr, &hresp).ok());
  EXPECT_EQ(hresp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  // Reflection: list_services ("\x3a\x00" is ServerReflectionRequest{list_services: ""}) as a
  // one-message exchange on the bidi method.
  grpc::GenericStub generic(Connect(server_->port()));
  grpc::ClientContext c4;
  grpc::Slice slice(std::string("\x3a\x00", 2));
  grpc::ByteBuffer req(&slice, 1), resp;
  std::promise<grpc::Status> done;
  generic.UnaryCall(&c4, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", grpc::StubOptions(), &req,
                    &resp, [&](grpc::Status s) { done.set_value(s); });
  ASSERT_TRUE(done.get_future().get().ok());
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(resp.Dump(&slices).ok());
  std::string bytes;
  for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  EXPECT_NE(bytes.find("sliminfer.v1.Inference"), std::string::npos);
  EXPECT_NE(bytes.find("grpc.health.v1.Health"), std::string::npos);
}

// A server with one sequence slot and a queue of two.
class SmallServer : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o = TestOptions();
    o.max_seqs = 1;
    o.max_queue = 2;
    server_ = StartServer(o);
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Inference::NewStub(Connect(server_->port()));
  }
  std::unique_ptr<InferenceServer> server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

TEST_F(SmallServer, DeadlineWhileQueuedEndsWithDeadlineExceededAndSparesTheRunningStream) {
  // A must outlive B's 300 ms deadline by a wide margin: 300 tokens take seconds at any decode
  // speed this machine reaches.
  const v1::GenerateRequest a_req = PromptRequest("An old sailor said", 300);
  const StreamResult alone = Stream(*stub_, a_req);
  ASSERT_TRUE(alone.status.ok());
  std::promise<void> running;
  std::atomic<bool> once{false};
  auto a = std::async(std::launch::async, [&] {
    return Stream(*stub_, a_req, 0, [&](const StreamResult&, grpc::ClientContext*) {
      if (!once.exchange(true)) running.set_value();
    });
  });
  running.get_future().wait();
  const StreamResult b = Stream(*stub_, PromptRequest("Queued and late", 8), 300);
  EXPECT_EQ(b.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_FALSE(b.started) << "it never left the queue";
  // The server removed it from the queue (outcome counted) while A still runs.
  EXPECT_TRUE(WaitFor([&] {
    return MetricValue(server_->metrics().Render(), "sliminfer_requests_total{outcome=\"deadline_exceeded\"}") == 1;
  }));
  EXPECT_EQ(server_->scheduler()->Stats().waiting, 0);
  const StreamResult ra = a.get();
  ASSERT_TRUE(ra.status.ok());
  EXPECT_EQ(ra.token_ids, alone.token_ids);
  EXPECT_TRUE(WaitFor([&] { return UsedKvBlocks(*server_) == 0; }));
}

TEST_F(SmallServer, FloodBeyondTheQueueIsRefusedForTheExcessOnly) {
  // One running stream (the only slot), then 6 more at once: 2 fit the queue, 4 are refused.
  std::promise<void> running;
  std::atomic<bool> once{false};
  auto first = std::async(std::launch::async, [&] {
    return Stream(*stub_, PromptRequest("The first of many", 40), 0, [&](const StreamResult&, grpc::ClientContext*) {
      if (!once.exchange(true)) running.set_value();
    });
  });
  running.get_future().wait();
  std::vector<std::future<StreamResult>> flood;
  for (int i = 0; i < 6; ++i) {
    flood.push_back(std::async(std::launch::async, [this, i] {
      return Stream(*stub_, PromptRequest("Flood " + std::to_string(i), 4));
    }));
  }
  int ok = 0, exhausted = 0;
  for (auto& f : flood) {
    StreamResult r = f.get();
    if (r.status.ok()) ++ok;
    else if (r.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++exhausted;
    else ADD_FAILURE() << r.status.error_message();
  }
  EXPECT_TRUE(first.get().status.ok());
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(exhausted, 4);
  // Still serving afterwards.
  const StreamResult after = Stream(*stub_, PromptRequest("After the flood", 4));
  EXPECT_TRUE(after.status.ok());
  const std::string m = server_->metrics().Render();
  EXPECT_EQ(MetricValue(m, "sliminfer_requests_total{outcome=\"resource_exhausted\"}"), 4);
  EXPECT_EQ(MetricValue(m, "sliminfer_requests_total{outcome=\"ok\"}"), 4);
  EXPECT_TRUE(WaitFor([&] { return UsedKvBlocks(*server_) == 0; }));
}

TEST(ServerNotReady, CallsAreUnavailableAndHealthNotServingUntilTheModelLoads) {
  ServerOptions o = TestOptions();
  (void)InitLogging(o.log_format, o.log_level);
  auto s = InferenceServer::Start(o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto stub = v1::Inference::NewStub(Connect((*s)->port()));
  StreamResult r = Stream(*stub, PromptRequest("Hi", 2));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(r.status.error_message().find("not loaded"), std::string::npos);
  auto health = grpc::health::v1::Health::NewStub(Connect((*s)->port()));
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
}

TEST(ServerLoadFailure, ABadModelFileKeepsTheServerUpAndUnavailableWithTheReason) {
  const std::string bad = ::testing::TempDir() + "/truncated.gguf";
  {
    std::ifstream in(SLIM_DEFAULT_MODEL, std::ios::binary);
    std::vector<char> head(4096);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream(bad, std::ios::binary).write(head.data(), in.gcount());
  }
  ServerOptions o = TestOptions();
  o.engine.model = bad;
  (void)InitLogging(o.log_format, o.log_level);
  auto s = InferenceServer::Start(o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const Status load = (*s)->LoadModel();
  ASSERT_FALSE(load.ok());
  EXPECT_NE(load.message().find("truncated.gguf"), std::string::npos) << load.ToString();
  (*s)->MarkLoadFailed(load);
  auto stub = v1::Inference::NewStub(Connect((*s)->port()));
  StreamResult r = Stream(*stub, PromptRequest("Hi", 2));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(r.status.error_message().find("failed to load"), std::string::npos) << r.status.error_message();
  EXPECT_NE(r.status.error_message().find("truncated.gguf"), std::string::npos) << r.status.error_message();
  auto health = grpc::health::v1::Health::NewStub(Connect((*s)->port()));
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
}

}  // namespace
}  // namespace slim::server::testing
