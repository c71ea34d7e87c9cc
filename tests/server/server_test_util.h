// Helpers for the server tests: an in-process server on loopback with the real default model,
// a streaming Generate call with its events, a free TCP port, a plain HTTP GET, and polling.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "server/server.h"
#include "sliminfer/v1/inference.grpc.pb.h"

namespace slim::server::testing {

namespace v1 = sliminfer::v1;

inline ServerOptions TestOptions() {
  ServerOptions o;
  o.engine.model = SLIM_DEFAULT_MODEL;
  o.host = "127.0.0.1";
  o.port = 0;
  o.http_host = "127.0.0.1";
  o.http_port = 0;
  o.metrics_host = "127.0.0.1";
  o.metrics_port = 0;
  o.engine.kv_tokens = 4096;
  o.engine.backend.threads = 2;
  o.log_level = "warn";
  return o;
}

// Starts a server and loads the model; fails the test when it cannot.
inline std::unique_ptr<InferenceServer> StartServer(const ServerOptions& o) {
  (void)InitLogging(o.log_format, o.log_level);
  auto s = InferenceServer::Start(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (!s.ok()) return nullptr;
  Status st = (*s)->LoadModel();
  EXPECT_TRUE(st.ok()) << st.ToString();
  if (!st.ok()) return nullptr;
  return std::move(*s);
}

inline std::shared_ptr<grpc::Channel> Connect(int port) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
}

struct StreamResult {
  grpc::Status status;
  bool started = false;
  v1::Started started_event;
  int started_count = 0;
  int finished_count = 0;
  v1::Finished finished;
  std::string text;
  std::vector<int32_t> token_ids;
  int chunks = 0;
};

// Streams one Generate. `on_chunk(result so far, ctx)` runs after each chunk (to cancel, abort,
// or signal another thread). `timeout_ms` > 0 sets a deadline.
inline StreamResult Stream(v1::Inference::Stub& stub, const v1::GenerateRequest& req, int timeout_ms = 0,
                           const std::function<void(const StreamResult&, grpc::ClientContext*)>& on_chunk = nullptr) {
  StreamResult r;
  grpc::ClientContext ctx;
  if (timeout_ms > 0) ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  auto reader = stub.Generate(&ctx, req);
  v1::GenerateResponse resp;
  while (reader->Read(&resp)) {
    if (resp.has_started()) {
      r.started = true;
      r.started_event = resp.started();
      ++r.started_count;
    } else if (resp.has_chunk()) {
      r.text += resp.chunk().text();
      r.token_ids.insert(r.token_ids.end(), resp.chunk().token_ids().begin(), resp.chunk().token_ids().end());
      ++r.chunks;
      if (on_chunk) on_chunk(r, &ctx);
    } else if (resp.has_finished()) {
      r.finished = resp.finished();
      ++r.finished_count;
    }
  }
  r.status = reader->Finish();
  return r;
}

inline v1::GenerateRequest PromptRequest(const std::string& prompt, int max_tokens, bool ignore_eos = true) {
  v1::GenerateRequest req;
  req.set_prompt(prompt);
  req.mutable_stopping()->set_max_tokens(max_tokens);
  req.mutable_stopping()->set_ignore_eos(ignore_eos);
  return req;
}

// Polls `pred` every 10 ms up to `timeout`; returns its last value.
inline bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

inline int64_t UsedKvBlocks(const InferenceServer& s) { return s.engine()->kv().Stats().gpu.pool.used_blocks; }

// A TCP port free at the time of the call (bind to 0, read it back, close).
inline int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

// A loopback TCP connection to `port` with a receive timeout (a stalled server fails the test
// instead of hanging it); -1 when it cannot connect.
inline int Dial(int port, std::chrono::seconds recv_timeout = std::chrono::seconds(30)) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{static_cast<time_t>(recv_timeout.count()), 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// GET http://127.0.0.1:port/path; returns the body ("" on failure).
inline std::string HttpGet(int port, const std::string& path) {
  const int fd = Dial(port);
  if (fd < 0) return "";
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (send(fd, req.data(), req.size(), 0) < 0) {
    close(fd);
    return "";
  }
  std::string out;
  char buf[8192];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

// The value of the first sample line starting with `series` (e.g. `name{label="x"}`) in a
// Prometheus text exposition, or -1.
inline double MetricValue(const std::string& text, const std::string& series) {
  size_t pos = 0;
  while ((pos = text.find(series + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') return std::stod(text.substr(pos + series.size() + 1));
    pos += series.size();
  }
  return -1;
}

}  // namespace slim::server::testing
