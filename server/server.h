// sliminfer-server assembled: the gRPC server (Inference service, grpc.health.v1, reflection,
// keepalive and message limits), the HTTP listener (OpenAI API, /health, /metrics) and the
// optional metrics-only listener, the engine and its scheduler thread, and the drain on
// shutdown. main.cpp adds flags and signals; tests run it in-process.
// Thread-safety: Start/LoadModel/Drain from one controlling thread; the accessors from any.
#pragma once

#include <chrono>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "engine/engine.h"
#include "server/clock.h"
#include "server/http_listener.h"
#include "server/inference_service.h"
#include "server/metrics.h"
#include "server/model_runner.h"
#include "server/openai_http.h"
#include "server/scheduler.h"
#include "server/server_options.h"

namespace slim::server {

class InferenceServer {
 public:
  // Binds the gRPC port (health NOT_SERVING, every call UNAVAILABLE until LoadModel), the HTTP
  // port and the metrics port. UNAVAILABLE when a port cannot be bound.
  static StatusOr<std::unique_ptr<InferenceServer>> Start(const ServerOptions& options);
  ~InferenceServer();  // Drain(0) unless drained

  // Loads the model, warms it up, starts the scheduler and reports SERVING.
  Status LoadModel();
  // After a failed LoadModel: stay up with health NOT_SERVING, every call UNAVAILABLE naming
  // the reason, until drained (a bad model file must not take the process down).
  void MarkLoadFailed(const Status& why);

  // Health NOT_SERVING, new calls UNAVAILABLE (HTTP 503); waits up to `grace` for live requests
  // to finish, ends the rest with UNAVAILABLE, then shuts gRPC and the HTTP listeners down (idle
  // HTTP connections are closed). Idempotent.
  void Drain(std::chrono::milliseconds grace);

  int port() const { return port_; }
  int http_port() const { return http_ ? http_->port() : -1; }
  // The port serving /metrics: the metrics-only listener's when there is one, else the HTTP port.
  int metrics_port() const { return metrics_http_ ? metrics_http_->port() : http_port(); }
  ServerMetrics& metrics() { return *metrics_; }
  const Engine* engine() const { return engine_.get(); }
  const Scheduler* scheduler() const { return scheduler_.get(); }
  const ServerOptions& options() const { return options_; }

 private:
  explicit InferenceServer(const ServerOptions& options);
  Status StartHttp();
  void StopHttp();  // idempotent

  ServerOptions options_;
  SteadyClock clock_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<OpenAiHttpApi> http_api_;
  std::unique_ptr<HttpListener> http_;
  std::unique_ptr<HttpListener> metrics_http_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<EngineRunner> runner_;
  std::unique_ptr<Scheduler> scheduler_;
  int port_ = 0;
  bool drained_ = false;
};

}  // namespace slim::server
