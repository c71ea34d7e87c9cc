// sliminfer-server assembled: the gRPC server (Inference service, grpc.health.v1, reflection,
// keepalive and message limits), the Prometheus exposer, the engine and its scheduler thread,
// and the drain on shutdown. main.cpp adds flags and signals; tests run it in-process.
// Thread-safety: Start/LoadModel/Drain from one controlling thread; the accessors from any.
#pragma once

#include <chrono>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "engine/engine.h"
#include "server/clock.h"
#include "server/inference_service.h"
#include "server/metrics.h"
#include "server/model_runner.h"
#include "server/scheduler.h"
#include "server/server_options.h"

namespace slim::server {

class InferenceServer {
 public:
  // Binds the gRPC port (health NOT_SERVING, every call UNAVAILABLE until LoadModel) and the
  // metrics port. UNAVAILABLE when a port cannot be bound.
  static StatusOr<std::unique_ptr<InferenceServer>> Start(const ServerOptions& options);
  ~InferenceServer();  // Drain(0) unless drained

  // Loads the model, warms it up, starts the scheduler and reports SERVING.
  Status LoadModel();
  // After a failed LoadModel: stay up with health NOT_SERVING, every call UNAVAILABLE naming
  // the reason, until drained (a bad model file must not take the process down).
  void MarkLoadFailed(const Status& why);

  // Health NOT_SERVING, new calls UNAVAILABLE; waits up to `grace` for live requests to finish,
  // ends the rest with UNAVAILABLE, then shuts gRPC down. Idempotent.
  void Drain(std::chrono::milliseconds grace);

  int port() const { return port_; }
  int metrics_port() const { return metrics_->exposer_port(); }
  ServerMetrics& metrics() { return *metrics_; }
  const Engine* engine() const { return engine_.get(); }
  const Scheduler* scheduler() const { return scheduler_.get(); }
  const ServerOptions& options() const { return options_; }

 private:
  explicit InferenceServer(const ServerOptions& options);

  ServerOptions options_;
  SteadyClock clock_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<EngineRunner> runner_;
  std::unique_ptr<Scheduler> scheduler_;
  int port_ = 0;
  bool drained_ = false;
};

}  // namespace slim::server
