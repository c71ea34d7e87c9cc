// The command-line clients against a real server on loopback: sliminfer-cli generate (streamed
// text and --json with the contract's fields, equal to a direct stream), tokenize, info, health,
// dns:/// targets, failures printing the gRPC status name and message and exiting 1, and
// `sliminfer-bench server` printing its JSON report.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "server_test_util.h"
#include "subprocess.h"

namespace slim::server::testing {
namespace {

using json = nlohmann::json;

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = StartServer(TestOptions()).release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    ASSERT_TRUE(std::filesystem::exists(BinDir() + "/sliminfer-cli")) << "build the sliminfer-cli target";
    target_ = "127.0.0.1:" + std::to_string(server_->port());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  CommandResult Cli_(std::vector<std::string> args) {
    args.insert(args.begin(), BinDir() + "/sliminfer-cli");
    return RunCommand(args, dir_);
  }
  static InferenceServer* server_;
  std::string target_;
  std::string dir_ = TempDir("cli");
};
InferenceServer* Cli::server_ = nullptr;

TEST_F(Cli, GenerateStreamsTextAndJsonHasTheContractFields) {
  const std::string prompt = "Name three colors.";
  CommandResult j = Cli_({"--server", target_, "generate", "--prompt", prompt, "--chat", "--max-tokens", "12", "--json"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  json out = json::parse(j.out);
  for (const char* k : {"text", "token_ids", "finish_reason", "ttft_ms", "e2e_ms", "prompt_tokens", "kept_tokens"})
    EXPECT_TRUE(out.contains(k)) << k << " missing in " << j.out;
  EXPECT_GT(out["ttft_ms"].get<double>(), 0.0);
  EXPECT_GE(out["e2e_ms"].get<double>(), out["ttft_ms"].get<double>());
  EXPECT_TRUE(out["kept_tokens"].is_array());

  // The same request through the API directly.
  v1::GenerateRequest req;
  auto* m = req.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content(prompt);
  req.mutable_stopping()->set_max_tokens(12);
  auto stub = v1::Inference::NewStub(Connect(server_->port()));
  StreamResult direct = Stream(*stub, req);
  ASSERT_TRUE(direct.status.ok());
  EXPECT_EQ(out["text"].get<std::string>(), direct.text);
  EXPECT_EQ(out["token_ids"].get<std::vector<int32_t>>(), direct.token_ids);
  EXPECT_EQ(out["prompt_tokens"].get<int>(), direct.finished.usage().prompt_tokens());

  // Without --json: the text on stdout, the summary on stderr.
  CommandResult t = Cli_({"--server", target_, "generate", "--prompt", prompt, "--chat", "--max-tokens", "12"});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_EQ(t.out, direct.text + "\n");
  EXPECT_NE(t.err.find("TTFT"), std::string::npos) << t.err;

  // A prompt file, pruning flag and a dns:/// target.
  const std::string file = dir_ + "/prompt.txt";
  { std::ofstream(file) << prompt; }
  CommandResult f = Cli_({"--server", "dns:///localhost:" + std::to_string(server_->port()), "generate", "--prompt-file",
                          file, "--chat", "--max-tokens", "12", "--pruning", "off", "--json"});
  ASSERT_EQ(f.exit_code, 0) << f.err;
  EXPECT_EQ(json::parse(f.out)["text"].get<std::string>(), direct.text);
}

TEST_F(Cli, FailedCallsPrintTheStatusAndExitNonZero) {
  CommandResult r = Cli_({"--server", target_, "generate", "--prompt", "", "--max-tokens", "4"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("INVALID_ARGUMENT: prompt: is empty"), std::string::npos) << r.err;
  r = Cli_({"--server", target_, "generate", "--prompt", "hi", "--temperature", "500"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("INVALID_ARGUMENT: sampling.temperature"), std::string::npos) << r.err;
  r = Cli_({"--server", "127.0.0.1:" + std::to_string(FreePort()), "--timeout", "3", "info"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.err.find("UNAVAILABLE") != std::string::npos || r.err.find("DEADLINE_EXCEEDED") != std::string::npos)
      << r.err;
  r = Cli_({"--server", target_, "frobnicate"});
  EXPECT_EQ(r.exit_code, 2) << "usage errors exit 2";
}

TEST_F(Cli, TokenizeInfoAndHealth) {
  CommandResult t = Cli_({"--server", target_, "tokenize", "--text", "Hello world", "--json"});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_EQ(json::parse(t.out)["token_ids"].get<std::vector<int32_t>>(),
            *server_->engine()->Tokenize("Hello world", false));
  CommandResult i = Cli_({"--server", target_, "info"});
  ASSERT_EQ(i.exit_code, 0) << i.err;
  json info = json::parse(i.out);
  EXPECT_EQ(info["n_layers"].get<int>(), 30);
  EXPECT_EQ(info["device"].get<std::string>(), "cpu");
  CommandResult h = Cli_({"--server", target_, "health", "--wait", "5"});
  EXPECT_EQ(h.exit_code, 0) << h.err;
  EXPECT_EQ(h.out, "SERVING\n");
}

TEST_F(Cli, BenchServerPrintsPercentilesAsJson) {
  const std::string bench = BinDir() + "/sliminfer-bench";
  ASSERT_TRUE(std::filesystem::exists(bench)) << "build the sliminfer-bench target";
  CommandResult r = RunCommand({bench, "server", "--server", target_, "--concurrency", "2", "--requests", "4",
                                "--prompt-tokens", "32,48", "--max-tokens", "4", "--warmup", "0", "--json"},
                               dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  EXPECT_EQ(out["ok"].get<int>(), 4);
  EXPECT_EQ(out["output_tokens"].get<int>(), 16);
  for (const char* k : {"ttft_ms", "itl_ms", "e2e_ms"}) {
    ASSERT_TRUE(out[k].is_object()) << k;
    EXPECT_LE(out[k]["p50"].get<double>(), out[k]["p99"].get<double>());
  }
  EXPECT_GT(out["throughput"]["output_tokens_per_s"].get<double>(), 0.0);
  EXPECT_NE(r.err.find("4/4 requests"), std::string::npos) << "progress bar on stderr: " << r.err;
  // A mix of two lengths is also reported per length.
  ASSERT_TRUE(out["by_prompt_tokens"].is_object()) << out.dump();
  EXPECT_EQ(out["by_prompt_tokens"]["32"]["ok"].get<int>(), 2);
  EXPECT_EQ(out["by_prompt_tokens"]["48"]["ok"].get<int>(), 2);
}

TEST_F(Cli, BenchServerOpenLoopReportsGoodputAtTheSlo) {
  const std::string bench = BinDir() + "/sliminfer-bench";
  ASSERT_TRUE(std::filesystem::exists(bench)) << "build the sliminfer-bench target";
  // An SLO nothing can meet (TTFT <= 0 ms), then one everything meets.
  for (const char* slo : {"0", "1000000"}) {
    CommandResult r = RunCommand({bench, "server", "--server", target_, "--rate", "20", "--requests", "6",
                                  "--prompt-tokens", "16", "--max-tokens", "3", "--warmup", "0", "--slo-ttft-ms",
                                  slo, "--slo-itl-ms", "1000000", "--json"},
                                 dir_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    json out = json::parse(r.out);
    EXPECT_EQ(out["ok"].get<int>(), 6);
    EXPECT_EQ(out["rate_per_s"].get<double>(), 20.0);
    EXPECT_TRUE(out["concurrency"].is_null());
    EXPECT_EQ(out["goodput"]["requests_meeting_slo"].get<int>(), std::string(slo) == "0" ? 0 : 6) << slo;
  }
}

}  // namespace
}  // namespace slim::server::testing
