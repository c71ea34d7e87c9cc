// sliminfer-soak: a bounded soak of the real server binary over loopback. It starts
// sliminfer-server with the default model, drives it for --minutes with a mixed load from
// --workers threads (gRPC streams, chat, client cancels, Aborts, short deadlines, invalid
// requests, Tokenize, HTTP completions, HTTP streams dropped mid-way), samples the server's RSS
// and open file descriptors every 10 s, and fails when, after --warmup-minutes, RSS grew more than
// --rss-margin or descriptors grew at all, when any call ended in an outcome its kind does not
// allow, or when KV blocks or running requests remain once the load stops.
// Prints one JSON object (the samples and the outcome counts) and exits 0 on success.
//   sliminfer-soak [--minutes 15] [--warmup-minutes 2] [--workers 6] [--rss-margin 0.05] [--out FILE]
#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/server/server_test_util.h"
#include "tests/server/subprocess.h"

namespace slim::server::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Args {
  double minutes = 15;
  double warmup_minutes = 2;
  int workers = 6;
  double rss_margin = 0.05;
  std::string out;
};

int64_t RssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

int OpenFds(pid_t pid) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

// POST a JSON body over HTTP/1.0; returns the whole response ("" on failure). With
// `drop_after_bytes` > 0, closes the connection once that much has arrived (a client going away).
std::string HttpPost(int port, const std::string& path, const std::string& body, size_t drop_after_bytes = 0) {
  const int fd = Dial(port, std::chrono::seconds(60));
  if (fd < 0) return "";
  const std::string req = "POST " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) < 0) {
    close(fd);
    return "";
  }
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (drop_after_bytes > 0 && out.size() >= drop_after_bytes) break;
  }
  close(fd);
  return out;
}

class Soak {
 public:
  Soak(const Args& a, int port, int http_port) : args_(a), port_(port), http_port_(http_port) {}

  void Worker(int id, Clock::time_point until) {
    std::mt19937 rng(1234 + id);
    auto stub = v1::Inference::NewStub(Connect(port_));
    int n = 0;
    while (Clock::now() < until) {
      const int kind = static_cast<int>(rng() % 100);
      const std::string rid = "soak-" + std::to_string(id) + "-" + std::to_string(n++);
      if (kind < 25) {
        v1::GenerateRequest req = PromptRequest("Tell me about the sea, part " + std::to_string(n), 8 + rng() % 48);
        if (rng() % 2) req.mutable_sampling()->set_temperature(0.8f);
        if (rng() % 4 == 0) req.mutable_sampling()->set_logprobs(5);
        Count("stream", Stream(*stub, req).status, {grpc::StatusCode::OK});
      } else if (kind < 35) {
        v1::GenerateRequest req;
        auto* m = req.mutable_chat()->add_messages();
        m->set_role("user");
        m->set_content("What is " + std::to_string(rng() % 100) + " plus 3?");
        req.mutable_stopping()->set_max_tokens(16);
        Count("chat", Stream(*stub, req).status, {grpc::StatusCode::OK});
      } else if (kind < 50) {
        const int after = 1 + static_cast<int>(rng() % 8);
        StreamResult r = Stream(*stub, PromptRequest("Count slowly to one hundred", 64), 0,
                                [&](const StreamResult& s, grpc::ClientContext* ctx) {
                                  if (s.chunks == after) ctx->TryCancel();
                                });
        Count("cancel", r.status, {grpc::StatusCode::CANCELLED, grpc::StatusCode::OK});
      } else if (kind < 60) {
        v1::GenerateRequest req = PromptRequest("A story about abort signals", 64);
        req.set_request_id(rid);
        StreamResult r = Stream(*stub, req, 0, [&](const StreamResult& s, grpc::ClientContext*) {
          if (s.chunks != 2) return;
          grpc::ClientContext actx;
          v1::AbortRequest ar;
          ar.set_request_id(rid);
          v1::AbortResponse aresp;
          Count("abort_rpc", stub->Abort(&actx, ar, &aresp), {grpc::StatusCode::OK, grpc::StatusCode::NOT_FOUND});
        });
        Count("aborted", r.status, {grpc::StatusCode::ABORTED, grpc::StatusCode::OK});
      } else if (kind < 68) {
        StreamResult r = Stream(*stub, PromptRequest("Deadline " + std::to_string(n), 64), 30 + rng() % 300);
        Count("deadline", r.status, {grpc::StatusCode::DEADLINE_EXCEEDED, grpc::StatusCode::OK});
      } else if (kind < 76) {
        v1::GenerateRequest req = PromptRequest("bad", 4);
        switch (rng() % 4) {
          case 0: req.mutable_sampling()->set_top_p(2.0f); break;
          case 1: req.set_prompt(std::string(1 << 20, 'z')); break;  // refused by its byte count
          case 2: for (int i = 0; i < 100; ++i) req.mutable_stopping()->add_stop_token_ids(i); break;
          default: req.set_request_id("req-reserved"); break;
        }
        Count("invalid", Stream(*stub, req).status, {grpc::StatusCode::INVALID_ARGUMENT});
      } else if (kind < 82) {
        grpc::ClientContext ctx;
        v1::TokenizeRequest tr;
        tr.set_text("Tokenize me " + std::to_string(n));
        v1::TokenizeResponse resp;
        Count("tokenize", stub->Tokenize(&ctx, tr, &resp), {grpc::StatusCode::OK});
      } else if (kind < 92) {
        const std::string body = R"({"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0})";
        const std::string resp = HttpPost(http_port_, "/v1/completions", body);
        CountHttp("http", resp.rfind("HTTP/1.1 200", 0) == 0 || resp.rfind("HTTP/1.0 200", 0) == 0);
      } else {
        const std::string body = R"({"messages": [{"role": "user", "content": "Stream a poem"}], "max_tokens": 48, "stream": true})";
        const std::string resp = HttpPost(http_port_, "/v1/chat/completions", body, 600);
        CountHttp("http_dropped", resp.find("200") != std::string::npos);
      }
    }
  }

  nlohmann::json Counts() {
    std::lock_guard<std::mutex> l(mu_);
    nlohmann::json j;
    for (const auto& [k, v] : counts_) j[k] = v;
    return j;
  }
  int unexpected() {
    std::lock_guard<std::mutex> l(mu_);
    return unexpected_;
  }

 private:
  void Count(const std::string& kind, const grpc::Status& s, std::initializer_list<grpc::StatusCode> allowed) {
    bool ok = false;
    for (grpc::StatusCode c : allowed) ok = ok || s.error_code() == c;
    std::lock_guard<std::mutex> l(mu_);
    ++counts_[kind + ":" + std::to_string(static_cast<int>(s.error_code()))];
    if (!ok) {
      ++unexpected_;
      if (unexpected_ <= 20) std::fprintf(stderr, "unexpected %s: %d %s\n", kind.c_str(), s.error_code(), s.error_message().c_str());
    }
  }
  void CountHttp(const std::string& kind, bool ok) {
    std::lock_guard<std::mutex> l(mu_);
    ++counts_[kind + (ok ? ":ok" : ":failed")];
    if (!ok) ++unexpected_;
  }

  Args args_;
  int port_, http_port_;
  std::mutex mu_;
  std::map<std::string, int64_t> counts_;
  int unexpected_ = 0;
};

int Main(const Args& a) {
  const std::string bin = BinDir() + "/sliminfer-server";
  if (!std::filesystem::exists(bin)) {
    std::fprintf(stderr, "%s is missing: build the sliminfer-server target\n", bin.c_str());
    return 2;
  }
  const std::string dir = TempDir("soak");
  const int port = FreePort(), http_port = FreePort();
  Subprocess server({bin, "--model", SLIM_DEFAULT_MODEL, "--host", "127.0.0.1", "--port", std::to_string(port),
                     "--http-host", "127.0.0.1", "--http-port", std::to_string(http_port), "--kv-tokens", "16384",
                     "--host-kv-gib", "0.5", "--max-seqs", "8", "--max-queue", "64", "--threads", "2",
                     "--log-level", "warn"},
                    dir + "/server.log");
  if (!WaitFor([&] { return HttpGet(http_port, "/health").find("\"SERVING\"") != std::string::npos || !server.Running(); },
               120s) ||
      !server.Running()) {
    std::fprintf(stderr, "server did not start:\n%s\n", server.Log().c_str());
    return 1;
  }
  Soak soak(a, port, http_port);
  const auto start = Clock::now();
  const auto until = start + std::chrono::milliseconds(static_cast<int64_t>(a.minutes * 60000));
  const auto warm = start + std::chrono::milliseconds(static_cast<int64_t>(a.warmup_minutes * 60000));
  std::vector<std::thread> workers;
  for (int i = 0; i < a.workers; ++i) workers.emplace_back([&, i] { soak.Worker(i, until); });

  nlohmann::json samples = nlohmann::json::array();
  int64_t base_rss = -1;
  int base_fds = -1;
  auto sample = [&](const char* phase) {
    const double t = std::chrono::duration<double>(Clock::now() - start).count();
    const int64_t rss = RssKib(server.pid());
    const int fds = OpenFds(server.pid());
    samples.push_back({{"t_s", t}, {"phase", phase}, {"rss_kib", rss}, {"fds", fds}});
    std::fprintf(stderr, "soak: t=%.0f s %s rss=%lld KiB fds=%d\n", t, phase, static_cast<long long>(rss), fds);
    return std::make_pair(rss, fds);
  };
  sample("start");
  while (Clock::now() < until && server.Running()) {
    std::this_thread::sleep_for(10s);
    if (base_rss < 0 && Clock::now() >= warm) {
      std::tie(base_rss, base_fds) = sample("baseline");
    } else {
      sample("load");
    }
  }
  for (auto& w : workers) w.join();
  // Idle: keep-alive HTTP connections close after their idle timeout; requests drain.
  std::this_thread::sleep_for(8s);
  const auto [end_rss, end_fds] = sample("end");
  const std::string metrics = HttpGet(http_port, "/metrics");
  const double used = MetricValue(metrics, "sliminfer_kv_blocks{tier=\"gpu\",state=\"used\"}");
  const double running = MetricValue(metrics, "sliminfer_num_requests_running");

  nlohmann::json out;
  out["minutes"] = a.minutes;
  out["workers"] = a.workers;
  out["samples"] = samples;
  out["outcomes"] = soak.Counts();
  out["unexpected_outcomes"] = soak.unexpected();
  out["baseline_rss_kib"] = base_rss;
  out["end_rss_kib"] = end_rss;
  out["rss_growth"] = base_rss > 0 ? static_cast<double>(end_rss - base_rss) / base_rss : 0.0;
  out["baseline_fds"] = base_fds;
  out["end_fds"] = end_fds;
  out["kv_used_blocks_after"] = used;
  out["running_after"] = running;
  std::vector<std::string> failures;
  if (!server.Running()) failures.push_back("the server exited");
  if (base_rss < 0) failures.push_back("the run ended before the warm-up did");
  if (base_rss > 0 && end_rss > base_rss * (1.0 + a.rss_margin)) failures.push_back("RSS grew beyond the margin");
  if (base_fds >= 0 && end_fds > base_fds) failures.push_back("open descriptors grew");
  if (soak.unexpected() > 0) failures.push_back("calls ended with outcomes their kind does not allow");
  if (used != 0) failures.push_back("KV blocks still used after the load");
  if (running != 0) failures.push_back("requests still running after the load");
  out["failures"] = failures;
  const std::string text = out.dump(1);
  std::printf("%s\n", text.c_str());
  if (!a.out.empty()) std::ofstream(a.out) << text << "\n";
  server.Signal(SIGTERM);
  server.Wait(60s);
  std::filesystem::remove_all(dir);
  return failures.empty() ? 0 : 1;
}

}  // namespace
}  // namespace slim::server::testing

int main(int argc, char** argv) {
  slim::server::testing::Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--minutes") a.minutes = std::stod(v);
    else if (k == "--warmup-minutes") a.warmup_minutes = std::stod(v);
    else if (k == "--workers") a.workers = std::stoi(v);
    else if (k == "--rss-margin") a.rss_margin = std::stod(v);
    else if (k == "--out") a.out = v;
    else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  if (argc % 2 == 0) {
    std::fprintf(stderr, "usage: sliminfer-soak [--minutes M] [--warmup-minutes W] [--workers N] [--rss-margin F] [--out FILE]\n");
    return 2;
  }
  return slim::server::testing::Main(a);
}
