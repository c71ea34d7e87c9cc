// Hardening of the gRPC endpoint, end to end over loopback with the real default model: a
// client that stops reading is cancelled after --stream-write-timeout-s; chunks merged behind
// a slow reader stay under the message limit; TLS with --tls-cert/--tls-key; reflection only
// where no API key is set.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>

#include <grpcpp/generic/generic_stub.h>

#include "server_test_util.h"

namespace slim::server::testing {
namespace {

// A request whose every token carries 20 top logprobs (about 200 bytes a chunk).
v1::GenerateRequest HeavyRequest(int max_tokens) {
  v1::GenerateRequest req = PromptRequest("Write a long story about a lighthouse keeper.", max_tokens);
  req.mutable_sampling()->set_logprobs(20);
  return req;
}

// A client channel with a small flow-control window and no BDP probing, so that a reader that
// falls behind makes the server's writes wait (the default window grows to megabytes).
std::shared_ptr<grpc::Channel> SmallWindowChannel(int port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args);
}

double Metric(const InferenceServer& s, const std::string& series) {
  return MetricValue(HttpGet(s.metrics_port(), "/metrics"), series);
}

TEST(Hardening, StreamWhoseClientStopsReadingIsCancelledAndCounted) {
  ServerOptions o = TestOptions();
  o.stream_write_timeout_s = 1.0;
  auto server = StartServer(o);
  ASSERT_NE(server, nullptr);
  auto stub = v1::Inference::NewStub(SmallWindowChannel(server->port()));
  grpc::ClientContext ctx;
  auto reader = stub->Generate(&ctx, HeavyRequest(4000));
  // Read nothing: the window fills, a write stays in flight, the watchdog cancels the call.
  ASSERT_TRUE(WaitFor([&] { return Metric(*server, "sliminfer_stream_write_timeouts_total") == 1; },
                      std::chrono::seconds(600)));
  EXPECT_TRUE(WaitFor([&] { return UsedKvBlocks(*server) == 0; }));
  EXPECT_EQ(Metric(*server, "sliminfer_requests_total{outcome=\"cancelled\"}"), 1);
  v1::GenerateResponse resp;
  int messages = 0;
  while (reader->Read(&resp)) ++messages;
  const grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::CANCELLED) << s.error_message();
  // The server keeps serving.
  auto normal = v1::Inference::NewStub(Connect(server->port()));
  StreamResult r = Stream(*normal, PromptRequest("Hello", 4));
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.token_ids.size(), 4u);
}

TEST(Hardening, MergedChunksStayUnderTheMessageLimit) {
  ServerOptions o = TestOptions();
  o.max_message_bytes = 8192;  // merged chunks are capped at half of it
  // The reader stalls on purpose: the write deadline must not end the stream first, however
  // slowly this build generates (sanitizers).
  o.stream_write_timeout_s = 3600;
  auto server = StartServer(o);
  ASSERT_NE(server, nullptr);
  auto stub = v1::Inference::NewStub(SmallWindowChannel(server->port()));
  grpc::ClientContext ctx;
  const int kTokens = 300;
  auto reader = stub->Generate(&ctx, HeavyRequest(kTokens));
  v1::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  ASSERT_TRUE(resp.has_started());
  // Fall behind while the tokens are generated, then read everything.
  ASSERT_TRUE(WaitFor([&] { return Metric(*server, "sliminfer_generation_tokens_total") >= kTokens; },
                      std::chrono::seconds(600)));
  int tokens = 0;
  int chunks = 0;
  size_t largest = 0;
  int most_tokens = 0;
  bool finished = false;
  while (reader->Read(&resp)) {
    largest = std::max(largest, resp.ByteSizeLong());
    if (resp.has_chunk()) {
      ++chunks;
      tokens += resp.chunk().token_ids_size();
      most_tokens = std::max(most_tokens, resp.chunk().token_ids_size());
      EXPECT_EQ(resp.chunk().logprobs_size(), resp.chunk().token_ids_size());
    }
    finished = finished || resp.has_finished();
  }
  const grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(finished);
  EXPECT_EQ(tokens, kTokens);
  EXPECT_GT(most_tokens, 1) << "no chunks were merged: the test did not fall behind";
  EXPECT_LE(largest, 8192u / 2 + 64) << "over " << chunks << " chunks";
}

// A self-signed certificate for 127.0.0.1 made with the openssl tool.
struct TestCert {
  std::filesystem::path dir;
  std::filesystem::path cert, key;
  TestCert() {
    dir = std::filesystem::temp_directory_path() / ("slim-tls-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    cert = dir / "cert.pem";
    key = dir / "key.pem";
    const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
                            "-addext subjectAltName=IP:127.0.0.1 -keyout " + key.string() + " -out " +
                            cert.string() + " >/dev/null 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  ~TestCert() { std::filesystem::remove_all(dir); }
  std::string Read(const std::filesystem::path& p) const {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
};

TEST(Hardening, ServesGrpcOverTls) {
  TestCert tc;
  ServerOptions o = TestOptions();
  o.tls_cert = tc.cert.string();
  o.tls_key = tc.key.string();
  auto server = StartServer(o);
  ASSERT_NE(server, nullptr);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = tc.Read(tc.cert);
  auto tls = v1::Inference::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(server->port()), grpc::SslCredentials(ssl)));
  StreamResult r = Stream(*tls, PromptRequest("Hello", 4));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.token_ids.size(), 4u);
  // A plaintext client cannot talk to it.
  auto plain = v1::Inference::NewStub(Connect(server->port()));
  StreamResult p = Stream(*plain, PromptRequest("Hello", 4), 5000);
  EXPECT_FALSE(p.status.ok());
  EXPECT_FALSE(p.started);
}

TEST(Hardening, BadTlsFilesAreRefusedNamingTheFlag) {
  TestCert tc;
  ServerOptions o = TestOptions();
  o.tls_cert = tc.cert.string();
  Status s = o.Validate();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--tls-key: is required with --tls-cert"), std::string::npos) << s.ToString();

  o.tls_key = (tc.dir / "missing.pem").string();
  auto r = InferenceServer::Start(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--tls-key: cannot read"), std::string::npos) << r.status().ToString();

  o.tls_key = tc.cert.string();  // a certificate where the key belongs
  r = InferenceServer::Start(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--tls-key: " + tc.cert.string() + " holds no PEM PRIVATE KEY block"),
            std::string::npos)
      << r.status().ToString();
}

// The status of one call of the reflection service (a bidirectional stream): UNIMPLEMENTED
// when the server does not offer it.
grpc::StatusCode ReflectionCall(int port) {
  auto channel = Connect(port);
  grpc::GenericStub generic(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call = generic.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag = nullptr;
  bool ok = false;
  call->StartCall(reinterpret_cast<void*>(1));
  cq.Next(&tag, &ok);
  // ServerReflectionRequest{list_services: ""} (field 7).
  grpc::Slice slice(std::string("\x3a\x00", 2));
  grpc::ByteBuffer req(&slice, 1);
  call->WriteLast(req, grpc::WriteOptions(), reinterpret_cast<void*>(2));
  cq.Next(&tag, &ok);
  grpc::ByteBuffer resp;
  call->Read(&resp, reinterpret_cast<void*>(3));
  cq.Next(&tag, &ok);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status.error_code();
}

TEST(Hardening, ReflectionOnlyWithoutAnApiKey) {
  ServerOptions keyed = TestOptions();
  keyed.api_key = "secret-key";
  keyed.warmup = false;
  auto a = StartServer(keyed);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(ReflectionCall(a->port()), grpc::StatusCode::UNIMPLEMENTED);

  ServerOptions open = TestOptions();
  open.warmup = false;
  auto b = StartServer(open);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(ReflectionCall(b->port()), grpc::StatusCode::OK);
  // The keyed server still has none after an open one started in the same process.
  EXPECT_EQ(ReflectionCall(a->port()), grpc::StatusCode::UNIMPLEMENTED);

  keyed.reflection = Reflection::kOn;
  auto c = StartServer(keyed);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(ReflectionCall(c->port()), grpc::StatusCode::OK);
}

}  // namespace
}  // namespace slim::server::testing
