// Abseil flags of sliminfer-server and their environment overrides.
#include "server/server_options.h"

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/reflection.h>
#include <absl/flags/usage.h>
#include <absl/flags/usage_config.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <mutex>

ABSL_FLAG(std::string, model, "models/SmolLM2-135M-Instruct.Q4_1.gguf", "GGUF model path or synthetic:NAME");
ABSL_FLAG(std::string, tokenizer, "",
          "for synthetic:NAME models: a GGUF whose vocabulary to use (e.g. models/ggml-vocab-llama-bpe.gguf, "
          "fetched by scripts/fetch-model.sh, for the Llama-3 shapes)");
ABSL_FLAG(std::string, device, "cpu", "cpu, cuda, or auto (cuda when a GPU is present, else cpu)");
ABSL_FLAG(int, threads, 0, "CPU threads for the engine (0 = all cores)");
ABSL_FLAG(std::string, kv_dtype, "auto", "KV cache type: auto (cpu f32, cuda bf16), f32 or f16 (cpu), bf16 (cuda)");
ABSL_FLAG(std::string, cuda_graphs, "auto",
          "cuda: launch decode steps as CUDA graphs (auto, on) or every kernel from the host (off)");
ABSL_FLAG(bool, chat_content_specials, false,
          "recognise special-token texts (<|im_start|> ...) inside chat message content too; off: content "
          "is plain text and only the chat template's markup yields special tokens (for trusted callers only)");
ABSL_FLAG(std::string, chat_template, "",
          "a Jinja chat template file used instead of the model's tokenizer.chat_template (a file that "
          "cannot be read or run is a start-up error)");
ABSL_FLAG(std::string, host, "0.0.0.0", "address the gRPC server binds");
ABSL_FLAG(int, port, 50051, "gRPC port (0 = any free port)");
ABSL_FLAG(std::string, http_host, "0.0.0.0", "address the HTTP listener (OpenAI API, /health, /metrics) binds");
ABSL_FLAG(int, http_port, 8000, "HTTP port: OpenAI API, /health, /metrics (0 = any free port, -1 = off)");
ABSL_FLAG(int, http_max_connections, 256, "HTTP connections open at once; more get 503 and are closed");
ABSL_FLAG(double, http_read_timeout_s, 10.0,
          "seconds a whole HTTP request (head and body) may take to arrive, however it trickles in");
ABSL_FLAG(double, http_idle_timeout_s, 5.0, "close HTTP keep-alive connections idle this many seconds");
ABSL_FLAG(double, http_write_timeout_s, 30.0,
          "an HTTP response write blocked this many seconds means the client is gone (its request is cancelled)");
ABSL_FLAG(int, http_max_body_bytes, 16 << 20, "largest HTTP request body; larger ones get 413");
ABSL_FLAG(std::string, served_model_name, "", "model id of the OpenAI API (\"\" = the model file name without .gguf)");
ABSL_FLAG(std::string, metrics_host, "0.0.0.0", "address the --metrics-port listener binds");
ABSL_FLAG(int, metrics_port, -1,
          "a second HTTP port serving only /metrics and /health (0 = any free port, -1 = none: use --http-port)");
ABSL_FLAG(std::string, api_key, "",
          "require 'authorization: Bearer KEY' on gRPC calls and /v1/* HTTP requests (health and /metrics stay "
          "open); set it through SLIMINFER_API_KEY or --api-key-file rather than argv");
ABSL_FLAG(std::string, api_key_file, "", "file whose first line is the API key (e.g. a mounted Secret)");
ABSL_FLAG(int, max_seqs, 64, "sequences decoded together (continuous batching)");
ABSL_FLAG(int, max_queue, 64,
          "requests waiting for admission; more get RESOURCE_EXHAUSTED. 0 = no waiting: a request is accepted "
          "only if it can start at once (a free --max-seqs slot and KV blocks for its worst case)");
ABSL_FLAG(int, max_prefill_tokens_per_step, -1,
          "prompt tokens prefilled per scheduler step (longer prompts are prefilled in chunks between decode steps, "
          "bounding running streams' inter-token gaps); -1 = the backend's default (CPU 512, CUDA 2048), 0 = no limit");
ABSL_FLAG(int, max_prompt_tokens, 0, "longest prompt accepted (0 = the model's context)");
ABSL_FLAG(int, max_total_tokens, 0, "longest prompt + max_tokens accepted (0 = the model's context)");
ABSL_FLAG(int, default_max_tokens, 256, "max_tokens of requests that leave it at 0");
ABSL_FLAG(int64_t, context_length, 0, "longest prompt + generation accepted (0 = the model's; up to 4x it)");
ABSL_FLAG(int64_t, kv_tokens, 0,
          "KV gpu tier in tokens per layer summed over sequences (0 = sized by --kv-gib or --gpu-memory-fraction)");
ABSL_FLAG(double, kv_gib, 0.0, "KV gpu tier in GiB (0 = --gpu-memory-fraction of the free device memory; cpu: 10% of RAM)");
ABSL_FLAG(double, gpu_memory_fraction, 0.90,
          "share of the device memory free after the weights and the largest activation workspace that the KV gpu "
          "tier takes (as vLLM's gpu_memory_utilization)");
ABSL_FLAG(int64_t, host_kv_tokens, 0, "KV host tier (swap space) in tokens per layer (0 = sized by --host-kv-gib)");
ABSL_FLAG(double, host_kv_gib, -1.0,
          "KV host tier in GiB, pinned in the background on CUDA (-1 = 25% of RAM, 0 = none: no swapping)");
ABSL_FLAG(std::string, pruning, "off", "pruning of requests that do not choose: off or default");
ABSL_FLAG(std::string, pruning_schedule, "", "the model's default pruning schedule layer:keep,... (\"\" = built-in)");
ABSL_FLAG(int64_t, decode_kv_budget, 0,
          "decode KV budget: prompt tokens per layer each segment of layers attends over while decoding, chosen per "
          "step from the new token's query (0 = every token; requests may set their own)");
ABSL_FLAG(int, decode_kv_select_layer, 0,
          "decode KV selection: the layer at which the first segment chooses its blocks (0 = its first layer; "
          "the layers before it attend over every block)");
ABSL_FLAG(std::string, decode_kv_score, "means",
          "decode KV selection: how blocks are scored, means (unit-mean keys, on the device) or bounds (per-unit "
          "key minima and maxima, on the host)");
ABSL_FLAG(int, decode_kv_resident_layers, 1,
          "decode KV selection with a host tier: layers after each choosing layer that keep every prompt block on "
          "the GPU tier, so the first layers read their chosen blocks with no fetch to wait for (0 = none)");
ABSL_FLAG(double, decode_kv_gamma, 0.9,
          "decode KV selection: overlap with the blocks in force at or above which a segment keeps them, in [0, 1]");
ABSL_FLAG(std::string, log_format, "text", "text or json (one JSON object per line)");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off");
ABSL_FLAG(double, drain_grace_s, 30.0, "on SIGTERM, seconds in-flight streams may take to finish");
ABSL_FLAG(int, keepalive_time_ms, 30000, "keepalive ping interval on idle connections");
ABSL_FLAG(int, keepalive_timeout_ms, 10000, "close a connection whose keepalive ping is unanswered this long");
ABSL_FLAG(int, max_message_bytes, 16 << 20, "largest request or response message");
ABSL_FLAG(double, stream_write_timeout_s, 30.0,
          "a gRPC Generate stream whose client reads nothing this many seconds is cancelled");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve gRPC over TLS (with --tls-key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::string, reflection, "auto",
          "gRPC server reflection: on, off, or auto (on only when no API key is set)");
ABSL_FLAG(bool, warmup, true, "run a short generation before reporting SERVING");
ABSL_FLAG(int64_t, warmup_tokens, 32768,
          "with --warmup on a backend that tunes per prompt size (CUDA): also prefill one prompt of each "
          "tuning size up to this many tokens (capped by --max-prompt-tokens, the context and the KV "
          "cache), dense and pruned, so the first long request is not slowed by tuning (0 = off)");

namespace slim::server {
namespace {

const char* const kFlagNames[] = {
    "model", "tokenizer",          "device",          "threads",           "kv_dtype",      "cuda_graphs", "host",          "port",
    "http_host", "http_port", "http_max_connections", "http_read_timeout_s", "http_idle_timeout_s",
    "http_write_timeout_s", "http_max_body_bytes", "served_model_name", "api_key", "api_key_file",
    "metrics_host",   "metrics_port",    "max_seqs",          "max_queue",     "max_prompt_tokens", "max_prefill_tokens_per_step",
    "max_total_tokens", "default_max_tokens", "context_length", "kv_tokens", "kv_gib", "gpu_memory_fraction", "host_kv_tokens", "host_kv_gib",    "pruning",       "pruning_schedule", "decode_kv_budget", "decode_kv_gamma", "decode_kv_select_layer", "decode_kv_score", "decode_kv_resident_layers",
    "log_format",     "log_level",       "drain_grace_s",     "keepalive_time_ms", "keepalive_timeout_ms",
    "max_message_bytes", "warmup", "warmup_tokens", "chat_content_specials", "chat_template", "stream_write_timeout_s",
    "tls_cert", "tls_key", "reflection"};

}  // namespace

std::string EnvVarForFlag(const std::string& flag) {
  std::string env = "SLIMINFER_";
  for (char c : flag) env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return env;
}

namespace {

StatusOr<DeviceChoice> ParseDeviceChoice(const std::string& s) {
  if (s == "cpu") return DeviceChoice::kCpu;
  if (s == "cuda") return DeviceChoice::kCuda;
  if (s == "auto") return DeviceChoice::kAuto;
  return InvalidArgumentError("--device: must be cpu, cuda or auto, got '" + s + "'");
}

StatusOr<PruningMode> ParsePruningChoice(const std::string& s) {
  if (s == "off") return PruningMode::kOff;
  if (s == "default") return PruningMode::kDefault;
  return InvalidArgumentError("--pruning: must be off or default, got '" + s + "'");
}

StatusOr<Reflection> ParseReflection(const std::string& s) {
  if (s == "auto") return Reflection::kAuto;
  if (s == "on") return Reflection::kOn;
  if (s == "off") return Reflection::kOff;
  return InvalidArgumentError("--reflection: must be auto, on or off, got '" + s + "'");
}

}  // namespace

EngineOptions ServerEngineDefaults() {
  EngineOptions e;
  e.model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  e.gpu_memory_fraction = 0.90;
  e.host_kv_gib = -1.0;
  return e;
}

Status ServerOptions::Validate() const {
  auto bad = [](const std::string& flag, const std::string& why) { return InvalidArgumentError("--" + flag + ": " + why); };
  const EngineOptions& e = engine;
  if (e.model.empty()) return bad("model", "is required");
  if (e.backend.threads < 0 || e.backend.threads > 1024) return bad("threads", "must be in [0, 1024]");
  if (port < 0 || port > 65535) return bad("port", "must be in [0, 65535]");
  if (metrics_port < -1 || metrics_port > 65535) return bad("metrics-port", "must be -1 (off) or in [0, 65535]");
  if (http_port < -1 || http_port > 65535) return bad("http-port", "must be -1 (off) or in [0, 65535]");
  if (http_max_connections < 1 || http_max_connections > 100000) return bad("http-max-connections", "must be in [1, 100000]");
  if (!(http_read_timeout_s >= 0.1 && http_read_timeout_s <= 3600)) return bad("http-read-timeout-s", "must be in [0.1, 3600]");
  if (!(http_idle_timeout_s >= 0.1 && http_idle_timeout_s <= 3600)) return bad("http-idle-timeout-s", "must be in [0.1, 3600]");
  if (!(http_write_timeout_s >= 0.1 && http_write_timeout_s <= 3600)) {
    return bad("http-write-timeout-s", "must be in [0.1, 3600]");
  }
  if (http_max_body_bytes < 1024) return bad("http-max-body-bytes", "must be >= 1024");
  if (api_key.find_first_of(" \t\r\n") != std::string::npos) return bad("api-key", "must not contain white space");
  if (max_seqs < 1 || max_seqs > 4096) return bad("max-seqs", "must be in [1, 4096]");
  if (max_queue < 0 || max_queue > 1000000) return bad("max-queue", "must be in [0, 1000000]");
  if (max_prompt_tokens < 0) return bad("max-prompt-tokens", "must be >= 0");
  if (max_prefill_tokens_per_step < -1) return bad("max-prefill-tokens-per-step", "must be -1 (auto), 0 (no limit) or > 0");
  if (warmup_tokens < 0) return bad("warmup-tokens", "must be >= 0");
  if (max_total_tokens < 0) return bad("max-total-tokens", "must be >= 0");
  if (default_max_tokens < 1) return bad("default-max-tokens", "must be >= 1");
  if (e.kv_tokens < 0) return bad("kv-tokens", "must be >= 0");
  if (!(e.kv_gib >= 0.0 && e.kv_gib <= 1e6)) return bad("kv-gib", "must be in [0, 1e6]");
  if (!(e.gpu_memory_fraction > 0.0 && e.gpu_memory_fraction <= 1.0)) {
    return bad("gpu-memory-fraction", "must be in (0, 1]");
  }
  if (e.host_kv_tokens < 0) return bad("host-kv-tokens", "must be >= 0");
  if (!(e.host_kv_gib == -1.0 || (e.host_kv_gib >= 0.0 && e.host_kv_gib <= 1e6))) {
    return bad("host-kv-gib", "must be -1 (25% of RAM) or in [0, 1e6]");
  }
  if (e.context_length < 0) return bad("context-length", "must be >= 0");
  if (pruning == PruningMode::kExplicit) return bad("pruning", "must be off or default");
  if (e.decode_kv_budget < 0) return bad("decode-kv-budget", "must be >= 0 (0 = every token)");
  if (!(e.decode_kv_gamma >= 0.0 && e.decode_kv_gamma <= 1.0)) return bad("decode-kv-gamma", "must be in [0, 1]");
  if (e.decode_kv_select_layer < 0) return bad("decode-kv-select-layer", "must be >= 0");
  if (e.decode_kv_resident_layers < 0) return bad("decode-kv-resident-layers", "must be >= 0");
  if (log_level != "trace" && log_level != "debug" && log_level != "info" && log_level != "warn" &&
      log_level != "error" && log_level != "off") {
    return bad("log-level", "must be trace, debug, info, warn, error or off");
  }
  if (!(drain_grace_s >= 0.0 && drain_grace_s <= 3600.0)) return bad("drain-grace-s", "must be in [0, 3600]");
  if (keepalive_time_ms < 1000) return bad("keepalive-time-ms", "must be >= 1000");
  if (keepalive_timeout_ms < 100) return bad("keepalive-timeout-ms", "must be >= 100");
  if (max_message_bytes < 4096) return bad("max-message-bytes", "must be >= 4096");
  if (!(stream_write_timeout_s >= 0.1 && stream_write_timeout_s <= 3600)) {
    return bad("stream-write-timeout-s", "must be in [0.1, 3600]");
  }
  if (tls_cert.empty() != tls_key.empty()) {
    return bad(tls_cert.empty() ? "tls-cert" : "tls-key", "is required with --" +
               std::string(tls_cert.empty() ? "tls-key" : "tls-cert"));
  }
  return OkStatus();
}

StatusOr<ServerOptions> ParseServerOptions(int argc, char** argv) {
  static std::once_flag usage_once;  // abseil refuses a second usage message
  std::call_once(usage_once, [] {
    // --help lists the flags of this file (abseil's default looks for main's file).
    absl::FlagsUsageConfig config;
    config.contains_help_flags = [](absl::string_view path) {
      return path.find("server_options") != absl::string_view::npos;
    };
    absl::SetFlagsUsageConfig(config);
    absl::SetProgramUsageMessage(
      "sliminfer-server --model PATH|synthetic:NAME --device cpu|cuda|auto --port 50051 --http-port 8000 "
      "--max-seqs N --max-queue N --pruning off|default ...\n"
      "Every flag may also come from the environment: SLIMINFER_<FLAG>, e.g. SLIMINFER_MAX_SEQS=8.");
  });
  // Environment first, so that the command line overrides it.
  for (const char* name : kFlagNames) {
    const char* value = std::getenv(EnvVarForFlag(name).c_str());
    if (value == nullptr) continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    std::string error;
    if (flag == nullptr || !flag->ParseFrom(value, &error)) {
      return InvalidArgumentError(EnvVarForFlag(name) + "='" + value + "': " + error);
    }
  }
  // Accept --max-seqs as well as --max_seqs.
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& a = args[i];
    if (a == "--") break;
    if (a.rfind("--", 0) != 0) continue;
    const size_t end = std::min(a.find('='), a.size());
    for (size_t k = 2; k < end; ++k)
      if (a[k] == '-') a[k] = '_';
  }
  std::vector<char*> cargs;
  for (std::string& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  std::vector<char*> positional = absl::ParseCommandLine(argc, cargs.data());
  if (positional.size() > 1) {
    return InvalidArgumentError(std::string("unexpected argument '") + positional[1] + "' (flags start with --)");
  }
  ServerOptions o;
  EngineOptions& e = o.engine;
  e.model = absl::GetFlag(FLAGS_model);
  e.tokenizer = absl::GetFlag(FLAGS_tokenizer);
  SLIM_ASSIGN_OR_RETURN(o.device, ParseDeviceChoice(absl::GetFlag(FLAGS_device)));
  e.backend.threads = absl::GetFlag(FLAGS_threads);
  auto kv_cache = ParseKvCache(absl::GetFlag(FLAGS_kv_dtype));
  if (!kv_cache.ok()) return kv_cache.status().WithPrefix("--kv-dtype");
  e.backend.kv_cache = *kv_cache;
  SLIM_ASSIGN_OR_RETURN(e.backend.cuda_graphs, ParseToggle("--cuda-graphs", absl::GetFlag(FLAGS_cuda_graphs)));
  e.chat_content_specials = absl::GetFlag(FLAGS_chat_content_specials);
  e.chat_template_file = absl::GetFlag(FLAGS_chat_template);
  o.host = absl::GetFlag(FLAGS_host);
  o.port = absl::GetFlag(FLAGS_port);
  o.http_host = absl::GetFlag(FLAGS_http_host);
  o.http_port = absl::GetFlag(FLAGS_http_port);
  o.http_max_connections = absl::GetFlag(FLAGS_http_max_connections);
  o.http_read_timeout_s = absl::GetFlag(FLAGS_http_read_timeout_s);
  o.http_idle_timeout_s = absl::GetFlag(FLAGS_http_idle_timeout_s);
  o.http_write_timeout_s = absl::GetFlag(FLAGS_http_write_timeout_s);
  o.http_max_body_bytes = absl::GetFlag(FLAGS_http_max_body_bytes);
  o.served_model_name = absl::GetFlag(FLAGS_served_model_name);
  o.api_key = absl::GetFlag(FLAGS_api_key);
  o.api_key_file = absl::GetFlag(FLAGS_api_key_file);
  if (!o.api_key_file.empty()) {
    if (!o.api_key.empty()) return InvalidArgumentError("--api-key and --api-key-file: set one");
    std::ifstream in(o.api_key_file);
    if (!in || !std::getline(in, o.api_key)) {
      return InvalidArgumentError("--api-key-file: cannot read " + o.api_key_file);
    }
    while (!o.api_key.empty() && (o.api_key.back() == '\r' || o.api_key.back() == ' ')) o.api_key.pop_back();
    if (o.api_key.empty()) return InvalidArgumentError("--api-key-file: " + o.api_key_file + " has an empty first line");
  }
  o.metrics_host = absl::GetFlag(FLAGS_metrics_host);
  o.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  o.max_seqs = absl::GetFlag(FLAGS_max_seqs);
  o.max_queue = absl::GetFlag(FLAGS_max_queue);
  o.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  o.max_prefill_tokens_per_step = absl::GetFlag(FLAGS_max_prefill_tokens_per_step);
  o.max_total_tokens = absl::GetFlag(FLAGS_max_total_tokens);
  o.default_max_tokens = absl::GetFlag(FLAGS_default_max_tokens);
  e.context_length = absl::GetFlag(FLAGS_context_length);
  e.kv_tokens = absl::GetFlag(FLAGS_kv_tokens);
  e.kv_gib = absl::GetFlag(FLAGS_kv_gib);
  e.gpu_memory_fraction = absl::GetFlag(FLAGS_gpu_memory_fraction);
  e.host_kv_tokens = absl::GetFlag(FLAGS_host_kv_tokens);
  e.host_kv_gib = absl::GetFlag(FLAGS_host_kv_gib);
  SLIM_ASSIGN_OR_RETURN(o.pruning, ParsePruningChoice(absl::GetFlag(FLAGS_pruning)));
  e.default_pruning = absl::GetFlag(FLAGS_pruning_schedule);
  e.decode_kv_budget = absl::GetFlag(FLAGS_decode_kv_budget);
  e.decode_kv_gamma = absl::GetFlag(FLAGS_decode_kv_gamma);
  e.decode_kv_select_layer = absl::GetFlag(FLAGS_decode_kv_select_layer);
  e.decode_kv_resident_layers = absl::GetFlag(FLAGS_decode_kv_resident_layers);
  {
    StatusOr<DecodeKvScore> score = ParseDecodeKvScore(absl::GetFlag(FLAGS_decode_kv_score));
    if (!score.ok()) return InvalidArgumentError("--decode-kv-score: " + std::string(score.status().message()));
    e.decode_kv_score = *score;
  }
  const std::string fmt = absl::GetFlag(FLAGS_log_format);
  if (fmt == "text") o.log_format = LogFormat::kText;
  else if (fmt == "json") o.log_format = LogFormat::kJson;
  else return InvalidArgumentError("--log-format: must be text or json");
  o.log_level = absl::GetFlag(FLAGS_log_level);
  o.drain_grace_s = absl::GetFlag(FLAGS_drain_grace_s);
  o.keepalive_time_ms = absl::GetFlag(FLAGS_keepalive_time_ms);
  o.keepalive_timeout_ms = absl::GetFlag(FLAGS_keepalive_timeout_ms);
  o.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  o.stream_write_timeout_s = absl::GetFlag(FLAGS_stream_write_timeout_s);
  o.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key = absl::GetFlag(FLAGS_tls_key);
  SLIM_ASSIGN_OR_RETURN(o.reflection, ParseReflection(absl::GetFlag(FLAGS_reflection)));
  o.warmup = absl::GetFlag(FLAGS_warmup);
  o.warmup_tokens = absl::GetFlag(FLAGS_warmup_tokens);
  SLIM_RETURN_IF_ERROR(o.Validate());
  return o;
}

}  // namespace slim::server
