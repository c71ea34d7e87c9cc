// The metrics endpoint scraped by a real Prometheus server (Debian's /usr/bin/prometheus, started
// here with a temporary config): through its HTTP API, the TTFT histogram count equals the
// number of requests that produced a token, outcomes are counted exactly, and the KV and queue
// families are present.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>

#include "server_test_util.h"
#include "subprocess.h"

namespace slim::server::testing {
namespace {

using json = nlohmann::json;

constexpr const char* kPrometheus = "/usr/bin/prometheus";

// Instant-query result values of `query` (empty when none yet).
std::vector<double> Query(int prom_port, const std::string& query) {
  std::string q;
  for (char c : query) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') q += c;
    else {
      char hex[4];
      std::snprintf(hex, sizeof(hex), "%%%02X", static_cast<unsigned char>(c));
      q += hex;
    }
  }
  const std::string body = HttpGet(prom_port, "/api/v1/query?query=" + q);
  json j = json::parse(body, nullptr, false);
  std::vector<double> out;
  if (j.is_discarded() || j.value("status", "") != "success") return out;
  for (const auto& r : j["data"]["result"]) out.push_back(std::stod(r["value"][1].get<std::string>()));
  return out;
}

TEST(Prometheus, ScrapedTtftCountEqualsRequestsThatProducedAToken) {
  ASSERT_TRUE(std::filesystem::exists(kPrometheus)) << "install the Debian package prometheus (scripts/setup.sh)";
  auto server = StartServer(TestOptions());
  ASSERT_NE(server, nullptr);
  auto stub = v1::Inference::NewStub(Connect(server->port()));

  // 6 requests that stream tokens (some concurrently), 3 refused before any token.
  std::vector<std::future<StreamResult>> calls;
  for (int i = 0; i < 6; ++i) {
    calls.push_back(std::async(std::launch::async, [&stub, i] {
      return Stream(*stub, PromptRequest("Metric number " + std::to_string(i), 3 + i % 3));
    }));
  }
  for (auto& f : calls) ASSERT_TRUE(f.get().status.ok());
  for (int i = 0; i < 3; ++i) {
    v1::GenerateRequest bad = PromptRequest("", 4);
    EXPECT_EQ(Stream(*stub, bad).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }

  const std::string dir = TempDir("prom");
  const int prom_port = FreePort();
  {
    std::ofstream cfg(dir + "/prometheus.yml");
    cfg << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        << "scrape_configs:\n  - job_name: sliminfer\n    static_configs:\n"
        << "      - targets: ['127.0.0.1:" << server->metrics_port() << "']\n";
  }
  Subprocess prom({kPrometheus, "--config.file=" + dir + "/prometheus.yml", "--storage.tsdb.path=" + dir + "/data",
                   "--web.listen-address=127.0.0.1:" + std::to_string(prom_port), "--log.level=warn"},
                  dir + "/prometheus.log");
  std::vector<double> ttft;
  const bool scraped = WaitFor(
      [&] {
        ttft = Query(prom_port, "sliminfer_time_to_first_token_seconds_count");
        return !ttft.empty();
      },
      std::chrono::seconds(60));
  ASSERT_TRUE(scraped) << "Prometheus never scraped the endpoint; its log:\n" << prom.Log();
  ASSERT_EQ(ttft.size(), 1u);
  EXPECT_EQ(ttft[0], 6.0);
  EXPECT_EQ(Query(prom_port, "up{job=\"sliminfer\"}"), std::vector<double>{1.0});
  EXPECT_EQ(Query(prom_port, "sliminfer_requests_total{outcome=\"ok\"}"), std::vector<double>{6.0});
  EXPECT_EQ(Query(prom_port, "sliminfer_requests_total{outcome=\"invalid_argument\"}"), std::vector<double>{3.0});
  EXPECT_EQ(Query(prom_port, "sum(sliminfer_requests_total)"), std::vector<double>{9.0});
  EXPECT_EQ(Query(prom_port, "sliminfer_e2e_request_latency_seconds_count"), std::vector<double>{6.0});
  EXPECT_EQ(Query(prom_port, "sliminfer_generation_tokens_total"), std::vector<double>{3 + 4 + 5 + 3 + 4 + 5});
  EXPECT_EQ(Query(prom_port, "sliminfer_kv_blocks{tier=\"host\",state=\"used\"}"), std::vector<double>{0.0});
  const std::vector<double> free_blocks = Query(prom_port, "sliminfer_kv_blocks{tier=\"host\",state=\"free\"}");
  ASSERT_EQ(free_blocks.size(), 1u);
  EXPECT_GT(free_blocks[0], 0.0);
  EXPECT_EQ(Query(prom_port, "sliminfer_num_requests_waiting"), std::vector<double>{0.0});
  EXPECT_EQ(Query(prom_port, "sliminfer_num_requests_running"), std::vector<double>{0.0});
  // Histogram buckets resolve 5 ms and 60 s.
  EXPECT_EQ(Query(prom_port, "count(sliminfer_time_to_first_token_seconds_bucket{le=\"0.005\"})").size(), 1u);
  EXPECT_EQ(Query(prom_port, "count(sliminfer_time_to_first_token_seconds_bucket{le=\"60\"})").size(), 1u);
  prom.Signal(SIGTERM);
  EXPECT_NE(prom.Wait(std::chrono::seconds(20)), -1);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace slim::server::testing
