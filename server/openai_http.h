// The OpenAI-compatible HTTP front end, as routes of an HttpListener: POST /v1/chat/completions
// and /v1/completions (one JSON object, or Server-Sent Events with one chunk per generated
// token, then `data: [DONE]`), GET /v1/models, GET /health, GET /metrics; errors as OpenAI error
// objects with the HTTP status of the gRPC code. From the GenerateRequest on, a request takes the
// gRPC path: the same builder, limits, admission, scheduler, metrics and log line
// (openai_request.h, http_generation.h).
// A deadline comes from the header X-Request-Timeout (seconds, like grpc-timeout): past it the
// request ends with 504, or with an error event once its stream has begun. A client that
// disconnects cancels its request at the scheduler's next step.
// With an API key, /v1/* need `Authorization: Bearer KEY` (401 otherwise); /health and /metrics
// stay open.
// Thread-safety: handlers run on connection threads; the object is read-only after construction.
#pragma once

#include <string>

#include "server/inference_service.h"
#include "server/metrics.h"

namespace httplib {
class Server;
}

namespace slim::server {

struct OpenAiHttpOptions {
  std::string served_model_name;  // the model id of /v1/models; requests naming another get 404
  size_t max_body_bytes = 0;      // for the 413 message
};

class OpenAiHttpApi {
 public:
  // `service` and `metrics` must outlive every listener the routes are added to.
  OpenAiHttpApi(const InferenceService* service, const ServerMetrics* metrics, OpenAiHttpOptions options);

  // Every route (the HTTP port).
  void AddRoutes(httplib::Server& server) const;
  // /metrics and /health only (the --metrics-port listener).
  void AddMetricsRoutes(httplib::Server& server) const;

 private:
  const InferenceService* service_;
  const ServerMetrics* metrics_;
  const OpenAiHttpOptions options_;
  const int64_t created_;  // Unix time of /v1/models' "created"
};

// The HTTP status of a status code: INVALID_ARGUMENT 400, UNAUTHENTICATED 401, NOT_FOUND 404,
// RESOURCE_EXHAUSTED 429, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, CANCELLED 499, others 5xx.
int HttpStatusFor(StatusCode code);

}  // namespace slim::server
