// A small synchronous client of sliminfer.v1.Inference shared by sliminfer-cli and
// `sliminfer-bench server`: channel setup (HOST:PORT or any gRPC target such as dns:///host:port,
// round_robin over the resolved addresses) and one streamed Generate with client-side timings.
// Thread-safety: a channel and stub may be shared by threads; each RunGenerate call is independent.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "sliminfer/v1/inference.grpc.pb.h"

namespace slim::client {

// `target`: "host:port", "dns:///host:port", "unix:/path", ...
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target);

// Adds the metadata `authorization: Bearer KEY` when the environment sets SLIMINFER_API_KEY (the
// key of a server started with --api-key; the environment keeps it out of argv).
void AddApiKey(grpc::ClientContext* ctx);

// "INVALID_ARGUMENT", "UNAVAILABLE", ...
const char* StatusCodeName(grpc::StatusCode code);

struct GenerateOutcome {
  grpc::Status status;
  std::string text;
  std::vector<int32_t> token_ids;
  sliminfer::v1::Started started;
  sliminfer::v1::Finished finished;
  bool has_started = false;
  bool has_finished = false;
  double ttft_ms = -1.0;              // call start to the first chunk holding a token (client side)
  double e2e_ms = 0.0;                // call start to the end of the stream
  std::vector<double> chunk_gaps_ms;  // between consecutive token-holding chunks
};

// Streams one Generate. `on_chunk` (may be empty) sees each TokenChunk as it arrives.
// `timeout_s` > 0 sets the call's deadline. `context_hook` (may be empty) receives the call's
// context before the call starts (to cancel it from another thread).
GenerateOutcome RunGenerate(sliminfer::v1::Inference::Stub& stub, const sliminfer::v1::GenerateRequest& request,
                            double timeout_s,
                            const std::function<void(const sliminfer::v1::TokenChunk&)>& on_chunk = nullptr,
                            const std::function<void(grpc::ClientContext*)>& context_hook = nullptr);

}  // namespace slim::client
