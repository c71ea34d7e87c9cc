// Chunked prefill end to end over loopback gRPC with the real default model: four streams
// decode while a 6,144-token prompt arrives. With a 512-token step budget the prompt is
// prefilled in 12 steps and the streams go on getting tokens in between; without a budget its
// whole prefill is one step, a gap as long as that prefill in every stream. The chunked prompt
// gives the unchunked one's tokens, and a pruned (default schedule) 2,048-token prompt chunked
// beside the streams gives the tokens the engine gives it alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/server/server_test_util.h"

namespace slim::server::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kLongTokens = 6144;
constexpr int kPrunedTokens = 2048;
constexpr int kBudget = 512;
constexpr int kLongMaxTokens = 4;

std::vector<int32_t> LongPrompt(const Engine& e) {
  std::string text;
  for (int i = 0; i < 3000; ++i) {
    text += "Entry " + std::to_string(i) + ": " + std::to_string(i * 13 % 29) + " lanterns over " +
            std::to_string(i * 17 % 83) + " bridges. ";
  }
  std::vector<int32_t> ids = *e.Tokenize(text, false);
  EXPECT_GE(ids.size(), static_cast<size_t>(kLongTokens));
  ids.resize(kLongTokens);
  return ids;
}

v1::GenerateRequest LongRequest(const std::vector<int32_t>& ids, v1::PruningOptions::Mode mode) {
  v1::GenerateRequest req;
  for (int32_t t : ids) req.mutable_token_ids()->add_ids(t);
  req.mutable_stopping()->set_max_tokens(kLongMaxTokens);
  req.mutable_stopping()->set_ignore_eos(true);
  req.mutable_pruning()->set_mode(mode);
  return req;
}

// What the decoding streams saw while one long prompt was prefilled.
struct Window {
  StreamResult long_result;
  double long_ttft_ms = 0.0;
  double max_gap_ms = 0.0;  // the longest gap between two tokens of a stream inside the window
  int min_tokens = 0;       // the fewest tokens a stream got inside the window
};

// Four streams decode on `server`; each long request in `longs` is sent in turn once they
// run, and the streams' token times are read over its prefill (submission to first token).
std::vector<Window> RunWindows(InferenceServer& server, const std::vector<v1::GenerateRequest>& longs) {
  constexpr int kStreams = 4;
  std::mutex mu;
  std::vector<std::vector<Clock::time_point>> times(kStreams);
  std::atomic<bool> stop{false};
  std::vector<std::thread> streams;
  for (int i = 0; i < kStreams; ++i) {
    streams.emplace_back([&, i] {
      auto stub = v1::Inference::NewStub(Connect(server.port()));
      v1::GenerateRequest req = PromptRequest("Stream " + std::to_string(i) + ": once upon a time", 2000);
      req.mutable_pruning()->set_mode(v1::PruningOptions::MODE_OFF);
      Stream(*stub, req, 0, [&, i](const StreamResult&, grpc::ClientContext* ctx) {
        {
          std::lock_guard<std::mutex> l(mu);
          times[static_cast<size_t>(i)].push_back(Clock::now());
        }
        if (stop.load()) ctx->TryCancel();
      });
    });
  }
  EXPECT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> l(mu);
    return std::all_of(times.begin(), times.end(), [](const auto& t) { return t.size() >= 3; });
  }));
  std::vector<Window> out;
  auto stub = v1::Inference::NewStub(Connect(server.port()));
  for (const v1::GenerateRequest& req : longs) {
    Window w;
    const Clock::time_point t0 = Clock::now();
    Clock::time_point first{};
    w.long_result = Stream(*stub, req, 0, [&](const StreamResult& r, grpc::ClientContext*) {
      if (first == Clock::time_point{}) first = Clock::now();
    });
    w.long_ttft_ms = std::chrono::duration<double, std::milli>(first - t0).count();
    std::lock_guard<std::mutex> l(mu);
    w.min_tokens = 1 << 30;
    for (const auto& ts : times) {
      int n = 0;
      Clock::time_point prev = t0;
      for (Clock::time_point t : ts) {
        if (t < t0 || t > first) continue;
        w.max_gap_ms = std::max(w.max_gap_ms, std::chrono::duration<double, std::milli>(t - prev).count());
        prev = t;
        ++n;
      }
      w.max_gap_ms = std::max(w.max_gap_ms, std::chrono::duration<double, std::milli>(first - prev).count());
      w.min_tokens = std::min(w.min_tokens, n);
    }
    out.push_back(std::move(w));
  }
  stop = true;
  for (auto& t : streams) t.join();
  return out;
}

std::vector<int32_t> Alone(const std::vector<int32_t>& prompt, PruningMode mode) {
  EngineOptions eo;
  eo.model = SLIM_DEFAULT_MODEL;
  eo.backend.threads = 2;
  eo.kv_tokens = kLongTokens + 64;
  auto e = Engine::Create(eo);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  if (!e.ok()) return {};
  StopParams st;
  st.max_tokens = kLongMaxTokens;
  st.ignore_eos = true;
  auto g = (*e)->Generate(prompt, SamplingParams{}, st, nullptr, -1, PruningRequest{.mode = mode});
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return g.ok() ? g->token_ids : std::vector<int32_t>{};
}

TEST(ChunkedPrefillServer, ALongPromptDoesNotStallTheRunningStreams) {
  ServerOptions o = TestOptions();
  o.engine.kv_tokens = kLongTokens + 4 * 2048 + 512;
  o.max_prefill_tokens_per_step = 0;  // unchunked
  std::vector<int32_t> prompt;
  Window whole;
  {
    auto server = StartServer(o);
    ASSERT_NE(server, nullptr);
    prompt = LongPrompt(*server->engine());
    std::vector<Window> w = RunWindows(*server, {LongRequest(prompt, v1::PruningOptions::MODE_OFF)});
    whole = std::move(w[0]);
  }
  o.max_prefill_tokens_per_step = kBudget;
  auto server = StartServer(o);
  ASSERT_NE(server, nullptr);
  const std::vector<int32_t> shorter(prompt.begin(), prompt.begin() + kPrunedTokens);
  std::vector<Window> chunked = RunWindows(
      *server, {LongRequest(prompt, v1::PruningOptions::MODE_OFF), LongRequest(shorter, v1::PruningOptions::MODE_DEFAULT)});
  ASSERT_EQ(chunked.size(), 2u);
  std::printf("unchunked: long TTFT %.0f ms, streams' longest gap %.0f ms, fewest tokens %d\n", whole.long_ttft_ms,
              whole.max_gap_ms, whole.min_tokens);
  for (const Window& w : chunked) {
    std::printf("budget %d: long TTFT %.0f ms (%d chunks), streams' longest gap %.0f ms, fewest tokens %d\n", kBudget,
                w.long_ttft_ms, w.long_result.started_event.prefill_chunks(), w.max_gap_ms, w.min_tokens);
  }

  ASSERT_TRUE(whole.long_result.status.ok()) << whole.long_result.status.error_message();
  EXPECT_EQ(whole.long_result.started_event.prefill_chunks(), 1);
  EXPECT_LE(whole.min_tokens, 2) << "without a budget the whole prefill is one step";

  const Window& dense = chunked[0];
  ASSERT_TRUE(dense.long_result.status.ok()) << dense.long_result.status.error_message();
  EXPECT_EQ(dense.long_result.started_event.prefill_chunks(), kLongTokens / kBudget);
  // Every stream decodes in (nearly) every chunk's step: no gap of a whole prefill.
  EXPECT_GE(dense.min_tokens, kLongTokens / kBudget - 2);
  EXPECT_LT(dense.max_gap_ms, 0.5 * whole.max_gap_ms)
      << "a gap of " << dense.max_gap_ms << " ms against " << whole.max_gap_ms << " ms unchunked";

  const Window& pruned = chunked[1];
  ASSERT_TRUE(pruned.long_result.status.ok()) << pruned.long_result.status.error_message();
  EXPECT_TRUE(pruned.long_result.started_event.pruning().applied());
  EXPECT_GT(pruned.long_result.started_event.prefill_chunks(), 1);
  EXPECT_GE(pruned.min_tokens, pruned.long_result.started_event.prefill_chunks() - 2);

  EXPECT_EQ(whole.long_result.token_ids.size(), static_cast<size_t>(kLongMaxTokens));
  EXPECT_EQ(dense.long_result.token_ids, whole.long_result.token_ids);
  EXPECT_EQ(pruned.long_result.token_ids, Alone(shorter, PruningMode::kDefault));

  const std::string metrics = HttpGet(server->metrics_port(), "/metrics");
  EXPECT_GE(MetricValue(metrics, "sliminfer_prefill_chunks_total"),
            dense.long_result.started_event.prefill_chunks() + pruned.long_result.started_event.prefill_chunks());
}

}  // namespace
}  // namespace slim::server::testing
