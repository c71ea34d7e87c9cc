// Server logging on spdlog: text lines or JSON lines (--log-format), and the one line logged per
// finished Generate call with its timings.
// Thread-safety: InitLogging once at startup, before other threads log; LogRequest from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "engine/core/status.h"

namespace slim::server {

enum class LogFormat { kText, kJson };

// Configures the default spdlog logger (stderr). `level`: trace, debug, info, warn, error, off.
Status InitLogging(LogFormat format, const std::string& level);

struct RequestLogLine {
  std::string request_id;
  std::string peer;
  std::string status = "OK";        // gRPC status code name
  std::string message;              // status message when not OK
  std::string finish_reason;        // when OK
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  double queue_ms = 0.0;
  double prefill_ms = 0.0;
  int32_t prefill_chunks = 0;       // engine steps the prefill took
  int32_t preemptions = 0;          // times swapped out to the host tier
  double ttft_ms = -1.0;            // -1: no token was written
  double e2e_ms = 0.0;
  double decode_ms_per_token = 0.0;
  std::string pruning;              // "layer:kept,..." or "off"
};

void LogRequest(const RequestLogLine& line);

}  // namespace slim::server
