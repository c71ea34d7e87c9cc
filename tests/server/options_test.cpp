// Server options: abseil flags spelled with '-' or '_', SLIMINFER_* environment overrides that
// the command line beats, and validation naming the flag.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "server/server_options.h"

namespace slim::server {
namespace {

TEST(ServerOptions, FlagsEnvironmentAndPrecedence) {
  EXPECT_EQ(EnvVarForFlag("max_seqs"), "SLIMINFER_MAX_SEQS");
  EXPECT_EQ(EnvVarForFlag("metrics-port"), "SLIMINFER_METRICS_PORT");
  setenv("SLIMINFER_MAX_SEQS", "7", 1);
  setenv("SLIMINFER_MAX_QUEUE", "99", 1);
  setenv("SLIMINFER_LOG_FORMAT", "json", 1);
  std::vector<std::string> args = {"sliminfer-server", "--max-queue", "5",   "--metrics-port=9999",
                                   "--pruning",        "default",     "--port", "0"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  auto o = ParseServerOptions(static_cast<int>(argv.size()), argv.data());
  unsetenv("SLIMINFER_MAX_SEQS");
  unsetenv("SLIMINFER_MAX_QUEUE");
  unsetenv("SLIMINFER_LOG_FORMAT");
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->max_seqs, 7) << "from the environment";
  EXPECT_EQ(o->max_queue, 5) << "the command line beats the environment";
  EXPECT_EQ(o->metrics_port, 9999);
  EXPECT_EQ(o->pruning, PruningMode::kDefault);
  EXPECT_EQ(o->port, 0);
  EXPECT_EQ(o->log_format, LogFormat::kJson);
  EXPECT_EQ(o->drain_grace_s, 30.0) << "defaults stay";
}

TEST(ServerOptions, ChatTemplateFileReachesTheEngineOptions) {
  for (const std::string file : {"my-template.jinja", ""}) {  // "" also resets the global flag
    std::vector<std::string> args = {"sliminfer-server", "--chat-template=" + file, "--port", "0"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    auto o = ParseServerOptions(static_cast<int>(argv.size()), argv.data());
    ASSERT_TRUE(o.ok()) << o.status().ToString();
    EXPECT_EQ(o->engine.chat_template_file, file);
  }
}

TEST(ServerOptions, ValidateNamesTheFlag) {
  auto expect = [](ServerOptions o, const std::string& flag) {
    Status s = o.Validate();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("--" + flag), std::string::npos) << s.message();
  };
  ServerOptions o;
  EXPECT_TRUE(o.Validate().ok());
  o.max_seqs = 0;
  expect(o, "max-seqs");
  o = {};
  o.port = 70000;
  expect(o, "port");
  o = {};
  o.metrics_port = -2;
  expect(o, "metrics-port");
  o = {};
  o.http_port = -2;
  expect(o, "http-port");
  o = {};
  o.http_max_connections = 0;
  expect(o, "http-max-connections");
  o = {};
  o.http_read_timeout_s = 0;
  expect(o, "http-read-timeout-s");
  o = {};
  o.api_key = "two words";
  expect(o, "api-key");
  o = {};
  o.drain_grace_s = -1;
  expect(o, "drain-grace-s");
  o = {};
  o.max_message_bytes = 10;
  expect(o, "max-message-bytes");
}

// Word-valued flags become enums when parsed; an unknown word is refused there, naming the flag.
TEST(ServerOptions, UnknownWordsAreRefusedNamingTheFlag) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"pruning", "sometimes"}, {"device", "tpu"}, {"reflection", "maybe"}, {"kv-dtype", "int4"},
      {"cuda-graphs", "sometimes"}};
  // Flags keep their values between parses in one process: each parse sets the others back.
  const std::vector<std::string> defaults = {"sliminfer-server", "--pruning=off", "--device=cpu", "--reflection=auto",
                                             "--kv-dtype=auto", "--cuda-graphs=auto"};
  for (const auto& [flag, word] : cases) {
    std::vector<std::string> args = defaults;
    args.push_back("--" + flag + "=" + word);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    auto o = ParseServerOptions(static_cast<int>(argv.size()), argv.data());
    ASSERT_FALSE(o.ok()) << flag;
    EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(o.status().message().find("--" + flag), std::string::npos) << o.status().message();
    EXPECT_NE(o.status().message().find(word), std::string::npos) << o.status().message();
  }
  std::vector<std::string> args = defaults;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  ASSERT_TRUE(ParseServerOptions(static_cast<int>(argv.size()), argv.data()).ok());
}

TEST(ServerOptions, BadEnvironmentValueIsAnError) {
  setenv("SLIMINFER_MAX_SEQS", "many", 1);
  std::vector<std::string> args = {"sliminfer-server"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  auto o = ParseServerOptions(1, argv.data());
  unsetenv("SLIMINFER_MAX_SEQS");
  EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(o.status().message().find("SLIMINFER_MAX_SEQS"), std::string::npos) << o.status().message();
}

// The server's options from its name and one flag.
StatusOr<ServerOptions> ParseOneFlag(const std::string& flag) {
  std::vector<std::string> args = {"sliminfer-server", flag};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return ParseServerOptions(static_cast<int>(argv.size()), argv.data());
}

TEST(ServerOptions, DecodeKvResidentLayersIsParsedAndANegativeOneNamesTheFlag) {
  auto bad = ParseOneFlag("--decode-kv-resident-layers=-1");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("--decode-kv-resident-layers"), std::string::npos) << bad.status().message();
  auto two = ParseOneFlag("--decode-kv-resident-layers=2");
  ASSERT_TRUE(two.ok()) << two.status().ToString();
  EXPECT_EQ(two->engine.decode_kv_resident_layers, 2);
  auto back = ParseOneFlag("--decode-kv-resident-layers=1");  // back to the default for the tests after
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->engine.decode_kv_resident_layers, 1);
}

TEST(ServerOptions, DecodeKvScoreIsParsedAndAnUnknownOneNamesTheFlag) {
  auto bad = ParseOneFlag("--decode-kv-score=quest");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("--decode-kv-score"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("means, bounds"), std::string::npos) << bad.status().message();
  auto bounds = ParseOneFlag("--decode-kv-score=bounds");
  ASSERT_TRUE(bounds.ok()) << bounds.status().ToString();
  EXPECT_EQ(bounds->engine.decode_kv_score, DecodeKvScore::kKeyBounds);
  auto means = ParseOneFlag("--decode-kv-score=means");  // back to the default for the tests after
  ASSERT_TRUE(means.ok()) << means.status().ToString();
  EXPECT_EQ(means->engine.decode_kv_score, DecodeKvScore::kUnitMeans);
}

TEST(ServerOptions, ApiKeyComesFromTheEnvironmentOrAFile) {
  setenv("SLIMINFER_API_KEY", "from-env", 1);
  std::vector<std::string> args = {"sliminfer-server"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  auto o = ParseServerOptions(1, argv.data());
  unsetenv("SLIMINFER_API_KEY");
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->api_key, "from-env");
  EXPECT_EQ(o->http_port, 8000);
  EXPECT_EQ(ServerOptions().metrics_port, -1) << "/metrics is on the HTTP port unless a metrics port is set";

  const std::string file = ::testing::TempDir() + "/api-key";
  FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("from-file\r\nsecond line\n", f);
  std::fclose(f);
  std::vector<std::string> args2 = {"sliminfer-server", "--api-key=", "--api-key-file", file};
  std::vector<char*> argv2;
  for (auto& a : args2) argv2.push_back(a.data());
  o = ParseServerOptions(static_cast<int>(argv2.size()), argv2.data());
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->api_key, "from-file");
}

}  // namespace
}  // namespace slim::server
