// sliminfer-cli: stream a completion from sliminfer-server (`generate`), tokenize text
// (`tokenize`), show the model and server limits (`info`), or wait for the server to report
// SERVING (`health`). A failed call prints the gRPC status name and message to stderr and
// exits 1; a usage error exits 2.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "client/bench/args.h"
#include "client/cli/inference_client.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace slim::client {
namespace {

namespace v1 = sliminfer::v1;
using json = nlohmann::json;
using bench::Args;

const char* kUsage = R"(usage: sliminfer-cli [--server HOST:PORT] [--timeout SECONDS] COMMAND [flags]
  --server    HOST:PORT or a gRPC target such as dns:///host:port (round_robin over its
              addresses); default localhost:50051 or $SLIMINFER_SERVER
  $SLIMINFER_API_KEY, when set, is sent as `authorization: Bearer KEY` (servers with --api-key)
commands:
  generate  --prompt TEXT | --prompt-file F  [--chat] [--system TEXT] [--max-tokens N]
            [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop TEXT] [--ignore-eos]
            [--pruning off|default] [--schedule LAYER:KEEP,...] [--request-id ID] [--json]
            streams the text to stdout; --json prints one object at the end instead:
            text, token_ids, finish_reason, ttft_ms, e2e_ms, prompt_tokens, kept_tokens, ...
  tokenize  --text TEXT | --file F  [--chat] [--special] [--json]
  info      model, KV cache and server limits (JSON)
  health    [--wait SECONDS]  exit 0 once the server reports SERVING
)";

// Exit codes.
constexpr int kUsageError = 2;
constexpr int kCallFailed = 1;

int Fail(const grpc::Status& s) {
  std::fprintf(stderr, "sliminfer-cli: %s: %s\n", StatusCodeName(s.error_code()), s.error_message().c_str());
  return kCallFailed;
}

int Usage(const std::string& why) {
  std::fprintf(stderr, "sliminfer-cli: %s\n%s", why.c_str(), kUsage);
  return kUsageError;
}

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string FinishName(v1::FinishReason r) {
  switch (r) {
    case v1::FINISH_REASON_LENGTH: return "length";
    case v1::FINISH_REASON_STOP_TOKEN: return "stop_token";
    case v1::FINISH_REASON_STOP_STRING: return "stop";
    case v1::FINISH_REASON_END_OF_GENERATION: return "eos";
    default: return "unspecified";
  }
}

// "10:0.25,20:512" -> explicit stages (a keep with a '.' is a fraction).
Status ParseSchedule(const std::string& text, v1::PruningOptions* out) {
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t colon = item.find(':');
    if (colon == std::string::npos) return InvalidArgumentError("--schedule: '" + item + "' is not LAYER:KEEP");
    v1::PruneStage* st = out->add_stages();
    try {
      st->set_layer(std::stoi(item.substr(0, colon)));
      const std::string keep = item.substr(colon + 1);
      if (keep.find('.') != std::string::npos) st->set_fraction(std::stod(keep));
      else st->set_tokens(std::stoll(keep));
    } catch (const std::exception&) {
      return InvalidArgumentError("--schedule: '" + item + "' is not LAYER:KEEP");
    }
  }
  if (out->stages().empty()) return InvalidArgumentError("--schedule is empty");
  out->set_mode(v1::PruningOptions::MODE_EXPLICIT);
  return OkStatus();
}

int CmdGenerate(v1::Inference::Stub& stub, const Args& a, double timeout_s) {
  v1::GenerateRequest req;
  std::string prompt;
  if (a.Has("prompt") == a.Has("prompt-file")) return Usage("generate: give exactly one of --prompt or --prompt-file");
  if (a.Has("prompt")) {
    prompt = a.Str("prompt");
  } else {
    StatusOr<std::string> text = ReadFile(a.Str("prompt-file"));
    if (!text.ok()) return Usage(text.status().message());
    prompt = *text;
  }
  if (a.Flag("chat")) {
    if (a.Has("system")) {
      v1::ChatMessage* m = req.mutable_chat()->add_messages();
      m->set_role("system");
      m->set_content(a.Str("system"));
    }
    v1::ChatMessage* m = req.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content(prompt);
  } else {
    req.set_prompt(prompt);
  }
  if (a.Has("request-id")) req.set_request_id(a.Str("request-id"));
  // Ranges are the server's to check; the CLI only parses numbers.
  auto num = [&](const std::string& name, double lo, double hi) -> StatusOr<double> {
    return a.Float(name, 0.0, lo, hi);
  };
  StatusOr<int64_t> max_tokens = a.Int("max-tokens", 128, 0, 1 << 30);
  StatusOr<double> temperature = num("temperature", -1e9, 1e9);
  StatusOr<int64_t> top_k = a.Int("top-k", 0, -(1 << 30), 1 << 30);
  StatusOr<double> top_p = a.Float("top-p", 1.0, -1e9, 1e9);
  StatusOr<int64_t> seed = a.Int("seed", 0, 0, INT64_MAX);
  for (const Status& s : {max_tokens.status(), temperature.status(), top_k.status(), top_p.status(), seed.status()}) {
    if (!s.ok()) return Usage(s.message());
  }
  req.mutable_stopping()->set_max_tokens(static_cast<int32_t>(*max_tokens));
  if (a.Has("stop")) req.mutable_stopping()->add_stop(a.Str("stop"));
  req.mutable_stopping()->set_ignore_eos(a.Flag("ignore-eos"));
  v1::SamplingOptions* sp = req.mutable_sampling();
  sp->set_temperature(static_cast<float>(*temperature));
  sp->set_top_k(static_cast<int32_t>(*top_k));
  if (a.Has("top-p")) sp->set_top_p(static_cast<float>(*top_p));
  sp->set_seed(static_cast<uint64_t>(*seed));
  if (a.Has("schedule")) {
    if (Status s = ParseSchedule(a.Str("schedule"), req.mutable_pruning()); !s.ok()) return Usage(s.message());
  } else if (a.Has("pruning")) {
    const std::string p = a.Str("pruning");
    if (p == "off") req.mutable_pruning()->set_mode(v1::PruningOptions::MODE_OFF);
    else if (p == "default") req.mutable_pruning()->set_mode(v1::PruningOptions::MODE_DEFAULT);
    else return Usage("--pruning must be off or default, got '" + p + "'");
  }
  const bool as_json = a.Flag("json");
  GenerateOutcome r = RunGenerate(stub, req, timeout_s, [&](const v1::TokenChunk& c) {
    if (as_json || c.text().empty()) return;
    std::fwrite(c.text().data(), 1, c.text().size(), stdout);
    std::fflush(stdout);
  });
  if (!as_json && !r.text.empty()) {
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  if (!r.status.ok()) return Fail(r.status);
  json kept = json::array();
  for (const auto& st : r.finished.pruning().stages()) kept.push_back({{"layer", st.layer()}, {"tokens", st.tokens_kept()}});
  const v1::Timings& t = r.finished.timings();
  if (as_json) {
    json j = {{"request_id", r.started.request_id()},
              {"text", r.text},
              {"token_ids", r.token_ids},
              {"finish_reason", FinishName(r.finished.reason())},
              {"ttft_ms", r.ttft_ms},
              {"e2e_ms", r.e2e_ms},
              {"prompt_tokens", r.finished.usage().prompt_tokens()},
              {"completion_tokens", r.finished.usage().completion_tokens()},
              {"pruning_applied", r.finished.pruning().applied()},
              {"kept_tokens", kept},
              {"kv_bytes", r.finished.pruning().kv_bytes()},
              {"dense_kv_bytes", r.finished.pruning().dense_kv_bytes()},
              {"server", {{"queue_ms", t.queue_ms()}, {"prefill_ms", t.prefill_ms()}, {"ttft_ms", t.ttft_ms()},
                          {"decode_ms_per_token", t.decode_ms_per_token()}, {"e2e_ms", t.e2e_ms()}}}};
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
  } else {
    std::string k;
    for (const auto& st : r.finished.pruning().stages())
      k += (k.empty() ? "" : ", ") + std::to_string(st.tokens_kept()) + "@L" + std::to_string(st.layer());
    std::fprintf(stderr, "[%d prompt tokens%s, %d generated, finish %s, TTFT %.1f ms (prefill %.1f ms), e2e %.1f ms, "
                 "%.2f ms/token]\n",
                 r.finished.usage().prompt_tokens(),
                 r.finished.pruning().applied() ? (", kept " + k).c_str() : ", dense",
                 r.finished.usage().completion_tokens(), FinishName(r.finished.reason()).c_str(), r.ttft_ms,
                 t.prefill_ms(), r.e2e_ms, t.decode_ms_per_token());
  }
  return 0;
}

int CmdTokenize(v1::Inference::Stub& stub, const Args& a, double timeout_s) {
  if (a.Has("text") == a.Has("file")) return Usage("tokenize: give exactly one of --text or --file");
  std::string text = a.Str("text");
  if (a.Has("file")) {
    StatusOr<std::string> t = ReadFile(a.Str("file"));
    if (!t.ok()) return Usage(t.status().message());
    text = *t;
  }
  v1::TokenizeRequest req;
  if (a.Flag("chat")) {
    v1::ChatMessage* m = req.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content(text);
  } else {
    req.set_text(text);
  }
  req.set_parse_special(a.Flag("special"));
  grpc::ClientContext ctx;
  client::AddApiKey(&ctx);
  if (timeout_s > 0) ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1e3)));
  v1::TokenizeResponse resp;
  grpc::Status s = stub.Tokenize(&ctx, req, &resp);
  if (!s.ok()) return Fail(s);
  if (a.Flag("json")) {
    std::cout << json{{"token_ids", std::vector<int32_t>(resp.token_ids().begin(), resp.token_ids().end())},
                      {"count", resp.token_ids_size()}}.dump()
              << std::endl;
  } else {
    for (int i = 0; i < resp.token_ids_size(); ++i) std::cout << (i ? " " : "") << resp.token_ids(i);
    std::cout << std::endl;
  }
  return 0;
}

int CmdInfo(v1::Inference::Stub& stub, double timeout_s) {
  grpc::ClientContext ctx;
  client::AddApiKey(&ctx);
  if (timeout_s > 0) ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1e3)));
  v1::ModelInfo info;
  grpc::Status s = stub.GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info);
  if (!s.ok()) return Fail(s);
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(info, &out, o);
  std::cout << out;
  return 0;
}

int CmdHealth(const std::shared_ptr<grpc::Channel>& channel, const Args& a) {
  StatusOr<double> wait = a.Float("wait", 0.0, 0.0, 86400.0);
  if (!wait.ok()) return Usage(wait.status().message());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(*wait * 1e3));
  grpc::Status last;
  std::string state = "UNKNOWN";
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    last = stub->Check(&ctx, req, &resp);
    if (last.ok()) {
      state = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
      if (resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
        std::cout << "SERVING" << std::endl;
        return 0;
      }
    }
    if (std::chrono::steady_clock::now() >= until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (!last.ok()) return Fail(last);
  std::fprintf(stderr, "sliminfer-cli: server is %s\n", state.c_str());
  return kCallFailed;
}

int Main(int argc, char** argv) {
  // Global flags come before the command; find the command word.
  const std::set<std::string> global_values = {"server", "timeout"};
  int cmd_at = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg.rfind("--", 0) == 0) {
      if (arg.find('=') == std::string::npos && global_values.count(arg.substr(2))) ++i;
      continue;
    }
    cmd_at = i;
    break;
  }
  if (cmd_at < 0) return Usage("no command given");
  const std::string cmd = argv[cmd_at];
  std::vector<char*> rest(argv, argv + argc);
  rest.erase(rest.begin() + cmd_at);
  std::set<std::string> known = {"server", "timeout"}, booleans;
  if (cmd == "generate") {
    known.insert({"prompt", "prompt-file", "system", "max-tokens", "temperature", "top-k", "top-p", "seed", "stop",
                  "pruning", "schedule", "request-id"});
    booleans = {"chat", "json", "ignore-eos"};
  } else if (cmd == "tokenize") {
    known.insert({"text", "file"});
    booleans = {"chat", "special", "json"};
  } else if (cmd == "health") {
    known.insert("wait");
  } else if (cmd != "info") {
    return Usage("unknown command '" + cmd + "'");
  }
  StatusOr<Args> a = Args::Parse(static_cast<int>(rest.size()), rest.data(), 1, known, booleans);
  if (!a.ok()) return Usage(a.status().message());
  const char* env_server = std::getenv("SLIMINFER_SERVER");
  const std::string target = a->Str("server", env_server ? env_server : "localhost:50051");
  StatusOr<double> timeout = a->Float("timeout", 0.0, 0.0, 1e6);
  if (!timeout.ok()) return Usage(timeout.status().message());
  std::shared_ptr<grpc::Channel> channel = MakeChannel(target);
  if (cmd == "health") return CmdHealth(channel, *a);
  auto stub = v1::Inference::NewStub(channel);
  if (cmd == "generate") return CmdGenerate(*stub, *a, *timeout);
  if (cmd == "tokenize") return CmdTokenize(*stub, *a, *timeout);
  return CmdInfo(*stub, *timeout);
}

}  // namespace
}  // namespace slim::client

int main(int argc, char** argv) { return slim::client::Main(argc, argv); }
