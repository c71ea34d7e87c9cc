// The sliminfer.v1.Inference service on gRPC's callback API: Generate (one GenerateReactor per
// stream), Tokenize, GetModelInfo and Abort. Requests are parsed from raw byte buffers so that
// undecodable input (invalid UTF-8) gets INVALID_ARGUMENT naming the field.
// Until SetReady every call gets UNAVAILABLE ("model not loaded"); after SetDraining likewise
// ("server is draining"). With an API key every call needs the metadata `authorization: Bearer
// KEY` (UNAUTHENTICATED otherwise); grpc.health.v1 stays open. The OpenAI HTTP front end
// (openai_http.h) shares the service's context, admission and key.
// Thread-safety: SetReady / SetDraining may be called from any thread; gRPC calls the handlers
// from its own threads.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "engine/engine.h"
#include "server/metrics.h"
#include "server/request_builder.h"
#include "server/request_registry.h"
#include "server/scheduler.h"
#include "server/write_watchdog.h"
#include "sliminfer/v1/inference.grpc.pb.h"

namespace slim::server {

struct ServiceOptions {
  RequestLimits limits;   // resolved against the model in SetReady when 0
  int max_seqs = 0;       // for GetModelInfo
  int max_queue = 0;
  std::string api_key;    // "" = no authentication
  // A Generate stream whose write stays in flight this long (the client reads nothing) is
  // cancelled.
  std::chrono::milliseconds stream_write_timeout{30'000};
  // Token chunks that pile up behind a slow reader are merged into messages of at most this size.
  size_t max_chunk_bytes = 1 << 20;
};

// What a Generate reactor needs from the service; valid while the service lives.
struct ServiceContext {
  const Engine* engine = nullptr;
  Scheduler* scheduler = nullptr;
  ServerMetrics* metrics = nullptr;
  RequestRegistry* registry = nullptr;
  RequestLimits limits;
  std::string api_key;    // "" = no authentication
  WriteWatchdog* watchdog = nullptr;
  std::chrono::milliseconds stream_write_timeout{30'000};
  size_t max_chunk_bytes = 1 << 20;
};

using InferenceServiceBase = sliminfer::v1::Inference::WithRawCallbackMethod_Generate<
    sliminfer::v1::Inference::WithRawCallbackMethod_Tokenize<
        sliminfer::v1::Inference::WithRawCallbackMethod_Abort<
            sliminfer::v1::Inference::WithCallbackMethod_GetModelInfo<sliminfer::v1::Inference::Service>>>>;

class InferenceService final : public InferenceServiceBase {
 public:
  InferenceService(ServerMetrics* metrics, ServiceOptions options);

  // The engine is loaded and warmed: start serving. `engine` and `scheduler` must outlive every
  // call (the server shuts gRPC down before destroying them).
  void SetReady(const Engine* engine, Scheduler* scheduler);
  void SetDraining();
  // The model could not be loaded: calls get UNAVAILABLE naming `why` (the server stays up).
  void SetLoadFailed(const Status& why);
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  const RequestLimits& limits() const { return ctx_.limits; }
  // UNAVAILABLE while not ready, failed to load or draining, else OK.
  Status Admissible() const;
  // What requests need (engine, scheduler, metrics, registry, limits); its engine and scheduler
  // are set once Admissible() has been OK.
  const ServiceContext& context() const { return ctx_; }

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const sliminfer::v1::GetModelInfoRequest* request,
                                         sliminfer::v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;

 private:
  // UNAUTHENTICATED without the API key, then Admissible().
  Status Authorized(const grpc::CallbackServerContext* ctx) const;

  ServiceOptions options_;
  WriteWatchdog watchdog_;  // before ctx_ (which points at it); outlives every stream
  ServiceContext ctx_;
  RequestRegistry registry_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  std::atomic<bool> load_failed_{false};
  std::string load_error_;  // written once before load_failed_ is set
};

// gRPC status from ours (the codes are the same numbers).
grpc::Status ToGrpc(const Status& s);

}  // namespace slim::server
