// SIGTERM drain of the real sliminfer-server binary (launched as a subprocess): streams in
// flight finish, new calls get UNAVAILABLE, health turns NOT_SERVING, and the process exits 0;
// a stream that outlives the grace period ends with UNAVAILABLE and the process still exits 0;
// idle and half-sent HTTP connections do not keep the process from exiting.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <future>

#include "grpc/health/v1/health.grpc.pb.h"
#include "server_test_util.h"
#include "subprocess.h"

namespace slim::server::testing {
namespace {

using namespace std::chrono_literals;

struct LaunchedServer {
  std::string dir = TempDir("drain");
  int port = FreePort();
  int http_port = FreePort();
  std::unique_ptr<Subprocess> proc;
  std::shared_ptr<grpc::Channel> channel;

  explicit LaunchedServer(const std::string& grace_s, const std::string& model = SLIM_DEFAULT_MODEL) {
    const std::string bin = BinDir() + "/sliminfer-server";
    EXPECT_TRUE(std::filesystem::exists(bin)) << bin << " is missing: build the sliminfer-server target";
    proc = std::make_unique<Subprocess>(
        std::vector<std::string>{bin, "--model", model, "--host", "127.0.0.1", "--port",
                                 std::to_string(port), "--http-host", "127.0.0.1", "--http-port", std::to_string(http_port),
                                 "--http-idle-timeout-s", "3600", "--http-read-timeout-s", "3600", "--kv-tokens", "4096",
                                 "--threads", "2", "--drain-grace-s", grace_s},
        dir + "/server.log");
    channel = Connect(port);
  }
  ~LaunchedServer() { std::filesystem::remove_all(dir); }

  // SERVING, NOT_SERVING, or "" when the call failed. A channel of its own each time (its own
  // subchannel too): a channel that first tried before the server listened would wait out
  // gRPC's reconnect backoff (1 s, 1.6 s, 2.6 s, ...), longer than a fast model load.
  std::string Health() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto stub = grpc::health::v1::Health::NewStub(grpc::CreateCustomChannel(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    grpc::health::v1::HealthCheckResponse resp;
    if (!stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp).ok()) return "";
    return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
  }
};

TEST(Drain, SigtermFinishesInFlightStreamsRefusesNewCallsAndExitsZero) {
  LaunchedServer s("30");
  ASSERT_TRUE(WaitFor([&] { return s.Health() == "SERVING" || !s.proc->Running(); }, 90s) &&
              s.proc->Running())
      << s.proc->Log();
  auto stub = v1::Inference::NewStub(s.channel);
  std::atomic<int> streaming{0};
  std::vector<std::future<StreamResult>> calls;
  for (int i = 0; i < 2; ++i) {
    calls.push_back(std::async(std::launch::async, [&, i] {
      bool counted = false;
      return Stream(*stub, PromptRequest("In flight " + std::to_string(i), 30), 0,
                    [&](const StreamResult&, grpc::ClientContext*) {
                      if (!counted) {
                        counted = true;
                        ++streaming;
                      }
                    });
    }));
  }
  ASSERT_TRUE(WaitFor([&] { return streaming.load() == 2; }, 60s));
  s.proc->Signal(SIGTERM);
  // New calls are refused while the two streams drain.
  ASSERT_TRUE(WaitFor([&] { return s.Health() != "SERVING"; }, 10s));
  const StreamResult late = Stream(*stub, PromptRequest("Too late", 4));
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::UNAVAILABLE) << late.status.error_message();
  const std::string health = s.Health();
  EXPECT_TRUE(health == "NOT_SERVING" || health.empty()) << health;
  for (auto& f : calls) {
    const StreamResult r = f.get();
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.token_ids.size(), 30u);
    EXPECT_EQ(r.finished_count, 1);
  }
  const int status = s.proc->Wait(60s);
  ASSERT_NE(status, -1) << "the server did not exit\n" << s.proc->Log();
  EXPECT_TRUE(WIFEXITED(status)) << s.proc->Log();
  EXPECT_EQ(WEXITSTATUS(status), 0) << s.proc->Log();
  const std::string log = s.proc->Log();
  EXPECT_NE(log.find("SIGTERM received"), std::string::npos) << log;
  EXPECT_NE(log.find("status=UNAVAILABLE"), std::string::npos) << "the refused call is logged\n" << log;
}

TEST(Drain, StreamsOutlivingTheGraceEndWithUnavailableAndTheProcessExitsZero) {
  LaunchedServer s("0.5");
  ASSERT_TRUE(WaitFor([&] { return s.Health() == "SERVING" || !s.proc->Running(); }, 90s) &&
              s.proc->Running())
      << s.proc->Log();
  auto stub = v1::Inference::NewStub(s.channel);
  std::promise<void> streaming;
  std::atomic<bool> once{false};
  auto call = std::async(std::launch::async, [&] {
    return Stream(*stub, PromptRequest("A very long story", 2000), 0, [&](const StreamResult&, grpc::ClientContext*) {
      if (!once.exchange(true)) streaming.set_value();
    });
  });
  streaming.get_future().wait();
  s.proc->Signal(SIGTERM);
  const StreamResult r = call.get();
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
  EXPECT_LT(r.token_ids.size(), 2000u);
  const int status = s.proc->Wait(60s);
  ASSERT_NE(status, -1) << s.proc->Log();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << s.proc->Log();
}


TEST(Drain, SigtermExitsWithIdleAndHalfSentHttpConnectionsOpen) {
  LaunchedServer s("30");  // idle and read timeouts of an hour: only the shutdown can end them
  ASSERT_TRUE(WaitFor([&] { return s.Health() == "SERVING" || !s.proc->Running(); }, 90s) &&
              s.proc->Running())
      << s.proc->Log();
  std::vector<int> fds;
  for (int i = 0; i < 4; ++i) fds.push_back(Dial(s.http_port));  // idle
  const int keep_alive = Dial(s.http_port);                        // one answered request, then idle
  const std::string req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(keep_alive, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  char buf[512];
  ASSERT_GT(recv(keep_alive, buf, sizeof(buf), 0), 0);
  fds.push_back(keep_alive);
  const int half = Dial(s.http_port);  // a request head that never ends
  const std::string partial = "POST /v1/completions HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(send(half, partial.data(), partial.size(), MSG_NOSIGNAL), static_cast<ssize_t>(partial.size()));
  fds.push_back(half);
  s.proc->Signal(SIGTERM);
  const int status = s.proc->Wait(60s);
  ASSERT_NE(status, -1) << "the server did not exit with HTTP connections open\n" << s.proc->Log();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << s.proc->Log();
  for (int fd : fds) close(fd);
}


TEST(Drain, SigtermDuringModelLoadExitsZeroWithoutServing) {
  // The Qwen2 0.5B (f16, about 1 GB) takes seconds to load: the signal lands in the middle.
  LaunchedServer s("30", SLIM_QWEN05_MODEL);
  ASSERT_TRUE(WaitFor([&] { return s.Health() == "NOT_SERVING" || !s.proc->Running(); }, 60s) && s.proc->Running())
      << s.proc->Log();
  s.proc->Signal(SIGTERM);
  const int status = s.proc->Wait(60s);
  ASSERT_NE(status, -1) << "still running: " << s.proc->Log();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const std::string log = s.proc->Log();
  EXPECT_NE(log.find("SIGTERM received during model load: exiting"), std::string::npos) << log;
  EXPECT_EQ(log.find("SERVING"), std::string::npos) << "the load finished before the signal: " << log;
}

}  // namespace
}  // namespace slim::server::testing
