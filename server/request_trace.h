// What a front end (the gRPC Generate reactor, an HTTP generation) records about one request
// between its arrival and its end, and the one place that turns it into the end-of-request
// metrics and log line. Not thread-safe: each front end touches it from one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "engine/core/status.h"
#include "engine/pruning/schedule.h"

namespace slim::server {

class ServerMetrics;

using SteadyTime = std::chrono::steady_clock::time_point;

// Milliseconds from a to b.
double MsSince(SteadyTime a, SteadyTime b);

// A pruning summary for the log line: "layer:kept,..." , "off" or "none".
std::string KeptString(const PruningSummary& s);

struct RequestTrace {
  SteadyTime arrival = std::chrono::steady_clock::now();
  bool submitted = false;             // the scheduler accepted it
  SteadyTime first_token{}, last_token{};
  int32_t delivered = 0;              // tokens handed to the client
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;      // from the Finished event
  std::string finish_reason;
  double queue_ms = 0.0, prefill_ms = 0.0, decode_ms = 0.0;
  int32_t prefill_chunks = 0;
  int32_t preemptions = 0;            // times the scheduler swapped it out (Finished event)
  std::string kept;                   // pruning summary for the log ("layer:tokens,...")

  // `n` tokens handed to the client at `now`: the first one observes TTFT, later ones the
  // inter-token latency.
  void Delivered(int32_t n, SteadyTime now, ServerMetrics* metrics);

  // Counts `status` (the outcome the client saw), observes the end-to-end latency of a
  // submitted request, and writes the request's log line.
  void Close(ServerMetrics* metrics, const std::string& request_id, const std::string& peer,
             const Status& status) const;
};

}  // namespace slim::server
