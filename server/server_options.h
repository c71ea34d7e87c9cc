// The server's options: one struct, parsed once at startup from abseil flags, each of which an
// environment variable SLIMINFER_<FLAG> (upper case, '-' as '_') may set; a flag given on the
// command line wins over the environment. Flags are spelled --max-seqs or --max_seqs.
// Thread-safety: ParseServerOptions touches the global flag registry: call it once, from main.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/status.h"
#include "engine/engine.h"
#include "engine/pruning/schedule.h"
#include "server/logging.h"

namespace slim::server {

// Where the model runs: cpu, cuda, or auto (cuda when a device is present, else cpu).
enum class DeviceChoice { kCpu, kCuda, kAuto };
// gRPC reflection: on, off, or auto (on only without an API key).
enum class Reflection { kAuto, kOn, kOff };

// The engine's options as the server starts it: the default model, the KV tiers sized from the
// machine (90% of free device memory, a quarter of RAM as the host tier).
EngineOptions ServerEngineDefaults();

struct ServerOptions {
  // Model, tokenizer, CPU threads, KV cache type and tiers, context length, default pruning
  // schedule, chat content specials (EngineOptions documents each). `engine.backend.device` is
  // set from `device` when the model loads.
  EngineOptions engine = ServerEngineDefaults();
  DeviceChoice device = DeviceChoice::kCpu;
  std::string host = "0.0.0.0";
  int port = 50051;                   // 0 = any free port
  // The HTTP listener: OpenAI API, /health, /metrics.
  std::string http_host = "0.0.0.0";
  int http_port = 8000;               // 0 = any free port, -1 = no HTTP listener
  int http_max_connections = 256;     // open at once; more get 503
  double http_read_timeout_s = 10.0;  // a whole request (head and body) must arrive in this time
  double http_idle_timeout_s = 5.0;   // keep-alive connections idle this long are closed
  double http_write_timeout_s = 30.0; // a response write blocked this long: the client is gone
  int http_max_body_bytes = 16 << 20; // larger request bodies get 413
  std::string served_model_name;      // the OpenAI model id; "" = the model file's name
  // A second listener with /metrics and /health only (where deployments scrape a port of its own).
  std::string metrics_host = "0.0.0.0";
  int metrics_port = -1;              // 0 = any free port, -1 = none (/metrics is on the HTTP port)
  // Clients must send `authorization: Bearer KEY` (gRPC metadata, HTTP header); "" = open.
  // Prefer SLIMINFER_API_KEY or --api-key-file to keep the key out of argv.
  std::string api_key;
  std::string api_key_file;           // the key is this file's first line
  int max_seqs = 64;                  // sequences decoding at once
  int max_queue = 64;                 // requests waiting for admission
  int max_prompt_tokens = 0;          // 0 = the model's context
  // Prompt tokens prefilled per scheduler step; -1 = the backend's default, 0 = no limit.
  int max_prefill_tokens_per_step = -1;
  int max_total_tokens = 0;           // prompt + max_tokens; 0 = the model's context
  int default_max_tokens = 256;       // when a request leaves max_tokens at 0
  PruningMode pruning = PruningMode::kOff;  // what requests without a pruning mode get: off or default
  LogFormat log_format = LogFormat::kText;
  std::string log_level = "info";
  double drain_grace_s = 30.0;        // SIGTERM: how long in-flight streams may take to finish
  int keepalive_time_ms = 30000;      // server pings idle connections this often
  int keepalive_timeout_ms = 10000;   // and drops them when a ping is not answered in this time
  int max_message_bytes = 16 << 20;   // receive and send limit per message
  double stream_write_timeout_s = 30.0; // a Generate stream whose client reads nothing this long is cancelled
  // gRPC over TLS: PEM files of the certificate chain and its key (both or neither).
  std::string tls_cert;
  std::string tls_key;
  Reflection reflection = Reflection::kAuto;
  bool warmup = true;                 // run a short generation before reporting SERVING
  int64_t warmup_tokens = 32768;      // and, on CUDA, prompts of each GEMM tuning size up to this

  // INVALID_ARGUMENT naming the flag.
  Status Validate() const;
};

// Parses argv (abseil flags; --help prints them) with SLIMINFER_* environment overrides, turns
// the word-valued flags into their enums (an unknown word is INVALID_ARGUMENT naming the flag),
// and reads --api-key-file into api_key.
// Unknown flags end the process with usage, as abseil does; bad values return INVALID_ARGUMENT.
StatusOr<ServerOptions> ParseServerOptions(int argc, char** argv);

// The environment variable that sets `flag` ("max_seqs" -> "SLIMINFER_MAX_SEQS").
std::string EnvVarForFlag(const std::string& flag);

}  // namespace slim::server
