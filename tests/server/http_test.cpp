// The HTTP listener over raw sockets against an in-process server with the real default model:
// idle and trickling clients do not stall /metrics or /health and are closed by the idle timeout
// and the whole-request deadline; connections past the cap get 503; SSE streams one event per
// token while the request is still generating (not buffered to the end, not compressed); a
// client that disconnects mid-stream cancels its request and frees its KV; the API key guards
// gRPC and /v1/* but not health or /metrics.
#include <gtest/gtest.h>
#include <cstdio>
#include <sstream>
#include <poll.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "server_test_util.h"

namespace slim::server::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

bool SendAll(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

std::string ReadToEnd(int fd) {
  std::string out;
  char buf[8192];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

struct HttpReply {
  int status = 0;
  std::string head, body;
};

// One request with Connection: close; the reply read to the end.
HttpReply Request(int port, const std::string& method, const std::string& path, const std::string& body = "",
                  const std::string& headers = "") {
  HttpReply r;
  const int fd = Dial(port);
  if (fd < 0) return r;
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers;
  if (!body.empty() || method == "POST") {
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  SendAll(fd, req);
  const std::string out = ReadToEnd(fd);
  close(fd);
  const size_t end = out.find("\r\n\r\n");
  if (out.size() < 12 || end == std::string::npos) return r;
  r.status = std::stoi(out.substr(9, 3));
  r.head = out.substr(0, end);
  r.body = out.substr(end + 4);
  return r;
}

// Reads a chunked SSE stream incrementally and splits it into `data:` payloads.
class SseReader {
 public:
  explicit SseReader(int fd) : fd_(fd) {}
  // The response head (status line and headers).
  std::string Head() {
    while (raw_.find("\r\n\r\n") == std::string::npos && Fill()) {
    }
    const size_t end = raw_.find("\r\n\r\n");
    if (end == std::string::npos) return "";
    std::string head = raw_.substr(0, end);
    raw_.erase(0, end + 4);
    return head;
  }
  // The next event's data, or nullopt at the end of the stream.
  std::optional<std::string> Next() {
    for (;;) {
      const size_t end = body_.find("\n\n");
      if (end != std::string::npos) {
        std::string event = body_.substr(0, end);
        body_.erase(0, end + 2);
        if (event.rfind("data: ", 0) == 0) return event.substr(6);
        continue;
      }
      if (!Dechunk() && !Fill()) return std::nullopt;
    }
  }

 private:
  bool Fill() {
    char buf[4096];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    raw_.append(buf, static_cast<size_t>(n));
    return true;
  }
  // Moves one complete chunk from raw_ to body_.
  bool Dechunk() {
    const size_t line = raw_.find("\r\n");
    if (line == std::string::npos) return false;
    const size_t size = std::stoul(raw_.substr(0, line), nullptr, 16);
    if (raw_.size() < line + 2 + size + 2) return false;
    body_ += raw_.substr(line + 2, size);
    raw_.erase(0, line + 2 + size + 2);
    return true;
  }
  int fd_;
  std::string raw_, body_;
};

std::string StreamRequest(const std::string& body) {
  return "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip, deflate, br\r\n"
         "Content-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

class HttpServer : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o = TestOptions();
    o.metrics_port = -1;  // /metrics on the HTTP port
    o.http_read_timeout_s = 3;
    o.http_idle_timeout_s = 3;
    Customize(&o);
    server_ = StartServer(o);
    ASSERT_NE(server_, nullptr);
    ASSERT_EQ(server_->metrics_port(), server_->http_port());
  }
  virtual void Customize(ServerOptions*) {}
  std::unique_ptr<InferenceServer> server_;
};

TEST_F(HttpServer, IdleAndTricklingClientsDoNotStallMetricsOrHealthAndAreClosed) {
  const int port = server_->http_port();
  std::vector<int> idle;
  for (int i = 0; i < 20; ++i) idle.push_back(Dial(port));
  // Three clients that send a request one byte per second: each must be cut off by the
  // whole-request deadline (3 s) before its request is complete.
  const std::string slow = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
  std::atomic<int> cut_off{0};
  std::vector<std::thread> tricklers;
  for (int i = 0; i < 3; ++i) {
    tricklers.emplace_back([&] {
      const int fd = Dial(port);
      for (char c : slow) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 0) > 0 || send(fd, &c, 1, MSG_NOSIGNAL) != 1) {  // the server closed it
          ++cut_off;
          break;
        }
        std::this_thread::sleep_for(1s);
      }
      close(fd);
    });
  }
  for (int round = 0; round < 6; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    const HttpReply m = Request(port, "GET", "/metrics");
    const HttpReply h = Request(port, "GET", "/health");
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(m.status, 200);
    EXPECT_NE(m.body.find("sliminfer_requests_total"), std::string::npos);
    EXPECT_EQ(h.status, 200);
    EXPECT_EQ(json::parse(h.body, nullptr, false).value("status", ""), "SERVING") << h.body;
    EXPECT_LT(took, 10s) << "a scrape waited behind idle or slow clients (liveness bound)";
    std::this_thread::sleep_for(500ms);
  }
  for (auto& t : tricklers) t.join();
  EXPECT_EQ(cut_off.load(), 3) << "a trickling client was allowed to finish a " << slow.size() << "-byte request";
  // Idle connections are closed by the idle timeout: the read ends with EOF, not our 30 s timeout.
  for (int fd : idle) {
    char c;
    EXPECT_EQ(recv(fd, &c, 1, 0), 0);
    close(fd);
  }
}

// The kernel's queue of connections not yet accepted: `ss` prints it as a listening socket's
// Send-Q. httplib's own is 5, which drops the SYNs of a burst of clients (each then retries
// after a second or more).
TEST_F(HttpServer, ListensWithABacklogForABurstOfClients) {
  const std::string cmd = "ss -ltnH 'sport = :" + std::to_string(server_->http_port()) + "' 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char line[512] = {0};
  const bool got = fgets(line, sizeof(line), p) != nullptr;
  pclose(p);
  if (!got) GTEST_SKIP() << "ss (iproute2) printed nothing";
  std::istringstream in(line);
  std::string state;
  long recv_q = -1, send_q = -1;
  in >> state >> recv_q >> send_q;
  EXPECT_EQ(state, "LISTEN") << line;
  EXPECT_GE(send_q, 128) << line;
}

class CappedHttpServer : public HttpServer {
  void Customize(ServerOptions* o) override {
    o->http_max_connections = 3;
    // The three held connections must outlive the whole test, however slow the machine: with the
    // default 5 s idle timeout a loaded CI machine saw them closed before the probe got its 503.
    o->http_idle_timeout_s = 120;
  }
};

TEST_F(CappedHttpServer, ConnectionsPastTheCapGet503AndTheCapFreesUp) {
  const int port = server_->http_port();
  std::vector<int> idle;
  // Each of the three counts against the cap once a request on it has been answered.
  for (int i = 0; i < 3; ++i) {
    idle.push_back(Dial(port));
    ASSERT_GE(idle.back(), 0);
    ASSERT_TRUE(SendAll(idle.back(), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
    char buf[512];
    ASSERT_GT(recv(idle.back(), buf, sizeof(buf), 0), 0) << "held connection " << i << " got no answer";
  }
  HttpReply last;
  ASSERT_TRUE(WaitFor([&] { return (last = Request(port, "GET", "/health")).status == 503; }, 10s))
      << "last probe: status " << last.status << " " << last.head << "\n" << last.body;
  const HttpReply busy = Request(port, "GET", "/health");
  EXPECT_EQ(busy.status, 503);
  EXPECT_NE(busy.body.find("too many open connections"), std::string::npos) << busy.body;
  for (int fd : idle) close(fd);
  EXPECT_TRUE(WaitFor([&] { return Request(port, "GET", "/health").status == 200; }, 10s));
}

TEST_F(HttpServer, StreamingSendsOneUncompressedEventPerTokenWhileGenerating) {
  const int fd = Dial(server_->http_port());
  ASSERT_GE(fd, 0);
  constexpr int kTokens = 64;
  ASSERT_TRUE(SendAll(fd, StreamRequest(R"({"prompt": "Once upon a time", "max_tokens": 64, "ignore_eos": true,
                                             "stream": true})")));
  SseReader reader(fd);
  const std::string head = reader.Head();
  EXPECT_EQ(head.substr(9, 3), "200") << head;
  EXPECT_NE(head.find("text/event-stream"), std::string::npos) << head;
  EXPECT_NE(head.find("Transfer-Encoding: chunked"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Encoding"), std::string::npos) << "an SSE stream must not be compressed\n" << head;
  std::optional<std::string> first = reader.Next();
  ASSERT_TRUE(first.has_value());
  // The first token event arrived while the request is still generating its 64 tokens.
  EXPECT_EQ(server_->scheduler()->live(), 1);
  int token_events = 0;
  std::string last_finish;
  bool done = false;
  for (std::optional<std::string> e = first; e; e = reader.Next()) {
    if (*e == "[DONE]") {
      done = true;
      break;
    }
    const json j = json::parse(*e);
    ASSERT_EQ(j["object"], "text_completion");
    const json& choice = j["choices"][0];
    if (choice["finish_reason"].is_null()) ++token_events;
    else last_finish = choice["finish_reason"];
  }
  close(fd);
  EXPECT_TRUE(done);
  EXPECT_EQ(token_events, kTokens);
  EXPECT_EQ(last_finish, "length");
}

TEST_F(HttpServer, DisconnectMidStreamCancelsTheRequestAndFreesItsKv) {
  const int64_t baseline = UsedKvBlocks(*server_);
  const double cancelled0 = MetricValue(server_->metrics().Render(), "sliminfer_requests_total{outcome=\"cancelled\"}");
  const int fd = Dial(server_->http_port());
  ASSERT_TRUE(SendAll(fd, StreamRequest(R"({"prompt": "Tell me a long story", "max_tokens": 3000,
                                             "ignore_eos": true, "stream": true})")));
  SseReader reader(fd);
  ASSERT_EQ(reader.Head().substr(9, 3), "200");
  ASSERT_TRUE(reader.Next().has_value());
  EXPECT_GT(UsedKvBlocks(*server_), baseline);
  close(fd);
  EXPECT_TRUE(WaitFor([&] { return server_->scheduler()->live() == 0 && UsedKvBlocks(*server_) == baseline; }, 30s))
      << "used blocks " << UsedKvBlocks(*server_) << " vs " << baseline;
  EXPECT_TRUE(WaitFor([&] {
    return MetricValue(server_->metrics().Render(), "sliminfer_requests_total{outcome=\"cancelled\"}") ==
           cancelled0 + 1;
  }));
}

class KeyedServer : public HttpServer {
  void Customize(ServerOptions* o) override { o->api_key = "test-key-123"; }
};

TEST_F(KeyedServer, ApiKeyGuardsGrpcAndV1ButNotHealthOrMetrics) {
  auto channel = Connect(server_->port());
  auto stub = v1::Inference::NewStub(channel);
  {
    grpc::ClientContext ctx;
    v1::ModelInfo info;
    EXPECT_EQ(stub->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer wrong-key-123");
    v1::ModelInfo info;
    EXPECT_EQ(stub->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer test-key-123");
    v1::ModelInfo info;
    EXPECT_TRUE(stub->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info).ok());
  }
  EXPECT_EQ(Stream(*stub, PromptRequest("Hi", 2)).status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer test-key-123");
    auto reader = stub->Generate(&ctx, PromptRequest("Hi", 2));
    v1::GenerateResponse resp;
    int tokens = 0;
    while (reader->Read(&resp)) tokens += resp.has_chunk() ? resp.chunk().token_ids_size() : 0;
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_EQ(tokens, 2);
  }
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext hctx;
  grpc::health::v1::HealthCheckResponse hresp;
  EXPECT_TRUE(health->Check(&hctx, grpc::health::v1::HealthCheckRequest(), &hresp).ok());

  const int port = server_->http_port();
  const HttpReply none = Request(port, "GET", "/v1/models");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(json::parse(none.body, nullptr, false)["error"]["type"], "authentication_error") << none.body;
  EXPECT_EQ(Request(port, "GET", "/v1/models", "", "Authorization: Bearer test-key-12\r\n").status, 401);
  EXPECT_EQ(Request(port, "POST", "/v1/completions", R"({"prompt": "Hi", "max_tokens": 2})").status, 401);
  EXPECT_EQ(Request(port, "GET", "/v1/models", "", "Authorization: Bearer test-key-123\r\n").status, 200);
  EXPECT_EQ(Request(port, "GET", "/health").status, 200);
  EXPECT_EQ(Request(port, "GET", "/metrics").status, 200);
}

}  // namespace
}  // namespace slim::server::testing
