// RequestTrace::Close: the end-of-request metrics and log line shared by both front ends.
#include "server/request_trace.h"

#include "server/logging.h"
#include "server/metrics.h"

namespace slim::server {

double MsSince(SteadyTime a, SteadyTime b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

std::string KeptString(const PruningSummary& s) {
  if (!s.applied) return "off";
  std::string out;
  for (const auto& st : s.stages) {
    out += (out.empty() ? "" : ",") + std::to_string(st.layer) + ":" + std::to_string(st.tokens_kept);
  }
  return out.empty() ? "none" : out;
}

void RequestTrace::Delivered(int32_t n, SteadyTime now, ServerMetrics* metrics) {
  if (delivered == 0) {
    first_token = now;
    metrics->ObserveTtft(MsSince(arrival, now) / 1e3);
  } else {
    metrics->ObserveInterToken(MsSince(last_token, now) / 1e3);
  }
  last_token = now;
  delivered += n;
}

void RequestTrace::Close(ServerMetrics* metrics, const std::string& request_id, const std::string& peer,
                         const Status& status) const {
  const SteadyTime now = std::chrono::steady_clock::now();
  metrics->CountRequest(status.code());
  if (submitted) metrics->ObserveE2e(MsSince(arrival, now) / 1e3);
  if (status.ok() && !finish_reason.empty()) metrics->ObserveCompleted(finish_reason, prompt_tokens, completion_tokens);
  RequestLogLine line;
  line.request_id = request_id.empty() ? "-" : request_id;
  line.peer = peer;
  line.status = StatusCodeName(status.code());
  line.message = status.message();
  line.finish_reason = finish_reason;
  line.prompt_tokens = prompt_tokens;
  line.completion_tokens = status.ok() ? completion_tokens : delivered;
  line.queue_ms = queue_ms;
  line.prefill_ms = prefill_ms;
  line.prefill_chunks = prefill_chunks;
  line.preemptions = preemptions;
  line.ttft_ms = delivered > 0 ? MsSince(arrival, first_token) : -1.0;
  line.e2e_ms = MsSince(arrival, now);
  line.decode_ms_per_token = completion_tokens > 1 ? decode_ms / (completion_tokens - 1) : 0.0;
  line.pruning = kept;
  LogRequest(line);
}

}  // namespace slim::server
