// The server's options: one struct, parsed once at startup from abseil flags, each of which an
// environment variable SLIMINFER_<FLAG> (upper case, '-' as '_') may set; a flag given on the
// command line wins over the environment. Flags are spelled --max-seqs or --max_seqs.
// Thread-safety: ParseServerOptions touches the global flag registry: call it once, from main.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/status.h"
#include "server/logging.h"

namespace slim::server {

struct ServerOptions {
  std::string model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";  // GGUF path or synthetic:NAME
  std::string device = "cpu";         // cpu, cuda, or auto (cuda when present, else cpu)
  int threads = 0;                    // CPU threads, 0 = all cores
  std::string kv_dtype = "auto";      // KV cache: auto (cpu f32, cuda bf16), f32/f16 (cpu), bf16 (cuda)
  std::string host = "0.0.0.0";
  int port = 50051;                   // 0 = any free port
  std::string metrics_host = "0.0.0.0";
  int metrics_port = 9464;            // 0 = any free port, -1 = no metrics endpoint
  int max_seqs = 64;                  // sequences decoding at once
  int max_queue = 64;                 // requests waiting for admission
  int max_prompt_tokens = 0;          // 0 = the model's context
  int max_total_tokens = 0;           // prompt + max_tokens; 0 = the model's context
  int default_max_tokens = 256;       // when a request leaves max_tokens at 0
  int64_t context_length = 0;         // longest sequence accepted; 0 = the model's (up to 4x it)
  // KV tiers (EngineOptions has the rules): gpu tier by tokens, GiB or a share of free memory;
  // host tier (swap space) by tokens or GiB (-1 = 25% of RAM, 0 = none).
  int64_t kv_tokens = 0;
  double kv_gib = 0.0;
  double gpu_memory_fraction = 0.90;
  int64_t host_kv_tokens = 0;
  double host_kv_gib = -1.0;
  std::string pruning = "off";        // what requests without a pruning mode get: off or default
  std::string pruning_schedule;       // the model's default schedule "layer:keep,..."; "" = built-in
  LogFormat log_format = LogFormat::kText;
  std::string log_level = "info";
  double drain_grace_s = 30.0;        // SIGTERM: how long in-flight streams may take to finish
  int keepalive_time_ms = 30000;      // server pings idle connections this often
  int keepalive_timeout_ms = 10000;   // and drops them when a ping is not answered in this time
  int max_message_bytes = 16 << 20;   // receive and send limit per message
  bool warmup = true;                 // run a short generation before reporting SERVING
  int64_t warmup_tokens = 32768;      // and, on CUDA, prompts of each GEMM tuning size up to this

  // INVALID_ARGUMENT naming the flag.
  Status Validate() const;
};

// Parses argv (abseil flags; --help prints them) with SLIMINFER_* environment overrides.
// Unknown flags end the process with usage, as abseil does; bad values return INVALID_ARGUMENT.
StatusOr<ServerOptions> ParseServerOptions(int argc, char** argv);

// The environment variable that sets `flag` ("max_seqs" -> "SLIMINFER_MAX_SEQS").
std::string EnvVarForFlag(const std::string& flag);

}  // namespace slim::server
