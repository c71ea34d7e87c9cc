// Swap instead of refusal, end to end over loopback gRPC with the real default model: a gpu
// tier that holds about one 1,500-token sequence (--kv-tokens 2048) and a host tier of 65,536
// tokens; six such requests arrive at once. Every one finishes with the greedy tokens the
// engine gives it alone, /metrics counts preemptions and KV bytes moved both ways (equal to
// what the store says it moved), and both tiers are back to empty afterwards.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "tests/server/server_test_util.h"

namespace slim::server::testing {
namespace {

// Six different 1,500-token prompts cut from one long text.
std::vector<std::vector<int32_t>> Prompts(const Engine& e) {
  std::string text;
  for (int i = 0; i < 900; ++i) {
    text += "Line " + std::to_string(i) + ": the " + std::to_string(i * 7 % 13) + " ships sailed past " +
            std::to_string(i * 31 % 97) + " islands. ";
  }
  const std::vector<int32_t> ids = *e.Tokenize(text, false);
  EXPECT_GE(ids.size(), 1500u + 5 * 300u);
  std::vector<std::vector<int32_t>> out;
  for (size_t k = 0; k < 6; ++k) out.emplace_back(ids.begin() + k * 300, ids.begin() + k * 300 + 1500);
  return out;
}

// A greedy request for exactly `max_tokens` tokens after `prompt`.
v1::GenerateRequest GreedyRequest(const std::vector<int32_t>& prompt, int max_tokens) {
  v1::GenerateRequest req;
  for (int32_t t : prompt) req.mutable_token_ids()->add_ids(t);
  req.mutable_stopping()->set_max_tokens(max_tokens);
  req.mutable_stopping()->set_ignore_eos(true);
  return req;
}

TEST(ServerSwap, SixLongRequestsOverATwoSequenceTierAllFinishWithTheirOwnTokens) {
  ServerOptions o = TestOptions();
  o.engine.kv_tokens = 2048;
  o.engine.host_kv_tokens = 65536;
  auto server = StartServer(o);
  ASSERT_NE(server, nullptr);
  const Engine& engine = *server->engine();
  ASSERT_GT(engine.kv_capacity().host_blocks, 0);
  const std::vector<std::vector<int32_t>> prompts = Prompts(engine);
  constexpr int kMaxTokens = 12;

  EngineOptions eo;
  eo.model = SLIM_DEFAULT_MODEL;
  eo.backend.threads = 2;
  auto ref = Engine::Create(eo);
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  std::vector<std::vector<int32_t>> alone;
  for (const auto& p : prompts) {
    StopParams st;
    st.max_tokens = kMaxTokens;
    st.ignore_eos = true;
    auto g = (*ref)->Generate(p, SamplingParams{}, st);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    alone.push_back(g->token_ids);
  }
  ref->reset();

  std::vector<StreamResult> results(prompts.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < prompts.size(); ++i) {
    clients.emplace_back([&, i] {
      auto stub = v1::Inference::NewStub(Connect(server->port()));
      results[i] = Stream(*stub, GreedyRequest(prompts[i], kMaxTokens));
    });
  }
  for (auto& t : clients) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    EXPECT_EQ(results[i].finished_count, 1);
    EXPECT_EQ(results[i].token_ids, alone[i]);
  }

  // A stream ends at its Finished event; the scheduler refreshes the gauges after its step, on
  // its own thread: wait for that (bounded) before reading them.
  EXPECT_TRUE(WaitFor([&] {
    const std::string text = HttpGet(server->metrics_port(), "/metrics");
    return MetricValue(text, "sliminfer_num_requests_running") == 0.0 &&
           MetricValue(text, "sliminfer_kv_blocks{tier=\"gpu\",state=\"used\"}") == 0.0 && UsedKvBlocks(*server) == 0;
  }));
  server->engine()->kv().Drain();
  const kv::KvStoreStats st = server->engine()->kv().Stats();
  const std::string m = HttpGet(server->metrics_port(), "/metrics");
  EXPECT_GT(MetricValue(m, "sliminfer_num_preemptions_total"), 0.0);
  // Each stream's Finished says how often it was swapped out; together, the server's count.
  int preempted = 0;
  for (const StreamResult& r : results) preempted += r.finished.preemptions();
  EXPECT_EQ(preempted, MetricValue(m, "sliminfer_num_preemptions_total"));
  const double d2h = MetricValue(m, "sliminfer_kv_transfer_bytes_total{direction=\"d2h\"}");
  const double h2d = MetricValue(m, "sliminfer_kv_transfer_bytes_total{direction=\"h2d\"}");
  EXPECT_GT(d2h, 0.0);
  EXPECT_GT(h2d, 0.0);
  EXPECT_EQ(d2h, static_cast<double>(st.transfers.bytes[static_cast<int>(kv::CopyDir::kD2H)]));
  EXPECT_EQ(h2d, static_cast<double>(st.transfers.bytes[static_cast<int>(kv::CopyDir::kH2D)]));
  // A swap-in's blocks are fetched; whether each landed before its layer ran is timing.
  EXPECT_GT(MetricValue(m, "sliminfer_kv_prefetch_total{result=\"fetched\"}") +
                MetricValue(m, "sliminfer_kv_prefetch_total{result=\"late\"}"),
            0.0);
  EXPECT_GT(MetricValue(m, "sliminfer_kv_evictions_total"), 0.0);
  EXPECT_EQ(MetricValue(m, "sliminfer_kv_blocks{tier=\"gpu\",state=\"used\"}"), 0.0);
  EXPECT_EQ(MetricValue(m, "sliminfer_kv_blocks{tier=\"host\",state=\"used\"}"), 0.0);
  EXPECT_EQ(MetricValue(m, "sliminfer_kv_swapped_sequences"), 0.0);
  EXPECT_EQ(MetricValue(m, "sliminfer_num_requests_running"), 0.0);
  EXPECT_EQ(st.gpu.pool.used_blocks, 0);
  EXPECT_EQ(st.host.pool.used_blocks, 0);
}

// A decode KV budget with a host tier, per request over gRPC: after the prompt's write-through
// the gpu tier holds only the chosen blocks, and Finished says how many bytes that was; a budget
// at least the stored tokens gives the tokens of no budget at all; /metrics shows the selections
// and both tiers return to empty.
TEST(ServerSwap, ADecodeKvBudgetLeavesOnlyTheChosenBlocksOnTheGpuTier) {
  ServerOptions o = TestOptions();
  o.engine.kv_tokens = 4096;
  o.engine.host_kv_tokens = 65536;
  auto server = StartServer(o);
  ASSERT_NE(server, nullptr);
  const Engine& engine = *server->engine();
  const std::vector<int32_t> prompt = Prompts(engine)[0];
  constexpr int kMaxTokens = 24;
  constexpr int64_t kBudget = 128;
  auto run = [&](int64_t budget) {
    auto stub = v1::Inference::NewStub(Connect(server->port()));
    v1::GenerateRequest req = GreedyRequest(prompt, kMaxTokens);
    req.mutable_pruning()->set_decode_kv_budget(budget);
    return Stream(*stub, req);
  };
  const StreamResult all = run(0), wide = run(4096), tight = run(kBudget);
  for (const StreamResult* r : {&all, &wide, &tight}) {
    ASSERT_TRUE(r->status.ok()) << r->status.error_message();
    ASSERT_EQ(r->token_ids.size(), static_cast<size_t>(kMaxTokens));
  }
  EXPECT_EQ(wide.token_ids, all.token_ids);

  const kv::KvLayout& L = server->engine()->kv().layout();
  const int64_t layers = engine.config().n_layers;
  const int64_t block = static_cast<int64_t>(L.BlockBytes());
  // Without a budget every block of the prompt and the generated tokens stays on the gpu tier.
  const int64_t stored_blocks = (static_cast<int64_t>(prompt.size()) + kMaxTokens - 1 + L.block_tokens - 1) / L.block_tokens;
  EXPECT_GE(all.finished.kv_gpu_bytes(), stored_blocks * layers * block);
  EXPECT_EQ(all.finished.kv_gpu_peak_bytes(), all.finished.kv_gpu_bytes());
  // With one: the budget's blocks, the sink, the last prompt block and the generated tokens'
  // block(s) at most, at every layer.
  const int64_t active_max = kBudget / L.block_tokens + 1 + 1 + (kMaxTokens + L.block_tokens - 1) / L.block_tokens + 1;
  EXPECT_LE(tight.finished.kv_gpu_bytes(), active_max * layers * block);
  EXPECT_GT(tight.finished.kv_gpu_bytes(), 0);
  EXPECT_LT(tight.finished.kv_gpu_bytes() * 4, all.finished.kv_gpu_bytes());
  EXPECT_GE(tight.finished.kv_gpu_peak_bytes(), tight.finished.kv_gpu_bytes());

  // A budgeted stream still decoding when another request's prompt arrives: the prompt's chunks
  // run in the same passes as its decodes (the last layer then runs on each sequence's last row
  // alone, where the budgeted decode must still read only blocks with a gpu slot); both finish.
  {
    auto stub = v1::Inference::NewStub(Connect(server->port()));
    v1::GenerateRequest req = GreedyRequest(prompt, 3 * kMaxTokens);
    req.mutable_pruning()->set_decode_kv_budget(kBudget);
    std::thread other_thread;
    StreamResult other;
    const StreamResult first = Stream(*stub, req, 0, [&](const StreamResult& r, grpc::ClientContext*) {
      if (r.token_ids.size() < 2 || other_thread.joinable()) return;
      other_thread = std::thread([&] {
        auto stub2 = v1::Inference::NewStub(Connect(server->port()));
        other = Stream(*stub2, GreedyRequest(Prompts(engine)[1], 8));
      });
    });
    ASSERT_TRUE(other_thread.joinable());
    other_thread.join();
    ASSERT_TRUE(first.status.ok()) << first.status.error_message();
    ASSERT_TRUE(other.status.ok()) << other.status.error_message();
    EXPECT_EQ(first.token_ids.size(), static_cast<size_t>(3 * kMaxTokens));
    EXPECT_EQ(other.token_ids.size(), 8u);
    EXPECT_LE(first.finished.kv_gpu_bytes(), active_max * layers * block + 2 * layers * block);
  }

  EXPECT_TRUE(WaitFor([&] {
    const std::string text = HttpGet(server->metrics_port(), "/metrics");
    return MetricValue(text, "sliminfer_num_requests_running") == 0.0 && UsedKvBlocks(*server) == 0;
  }));
  server->engine()->kv().Drain();
  const kv::KvStoreStats st = server->engine()->kv().Stats();
  const std::string m = HttpGet(server->metrics_port(), "/metrics");
  EXPECT_GT(MetricValue(m, "sliminfer_kv_selection_overlap_ratio_count"), 0.0);
  EXPECT_EQ(MetricValue(m, "sliminfer_kv_selection_overlap_ratio_count"), static_cast<double>(st.selections));
  EXPECT_EQ(MetricValue(m, "sliminfer_kv_prefetch_total{result=\"skipped_gamma\"}"),
            static_cast<double>(st.selections_kept));
  // The prompt went to the host tier once per budgeted request.
  EXPECT_GT(MetricValue(m, "sliminfer_kv_transfer_bytes_total{direction=\"d2h\"}"), 0.0);
  EXPECT_EQ(MetricValue(m, "sliminfer_num_preemptions_total"), 0.0);
  EXPECT_EQ(st.gpu.pool.used_blocks, 0);
  EXPECT_EQ(st.host.pool.used_blocks, 0);
}

}  // namespace
}  // namespace slim::server::testing
