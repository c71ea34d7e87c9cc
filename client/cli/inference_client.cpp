// Channel setup and the streamed Generate loop.
#include "client/cli/inference_client.h"

#include <chrono>
#include <cstdlib>

namespace slim::client {

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

const char* StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN";
  }
}

void AddApiKey(grpc::ClientContext* ctx) {
  static const std::string key = [] {
    const char* k = std::getenv("SLIMINFER_API_KEY");
    return std::string(k != nullptr ? k : "");
  }();
  if (!key.empty()) ctx->AddMetadata("authorization", "Bearer " + key);
}

GenerateOutcome RunGenerate(sliminfer::v1::Inference::Stub& stub, const sliminfer::v1::GenerateRequest& request,
                            double timeout_s, const std::function<void(const sliminfer::v1::TokenChunk&)>& on_chunk,
                            const std::function<void(grpc::ClientContext*)>& context_hook) {
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  GenerateOutcome out;
  grpc::ClientContext ctx;
  AddApiKey(&ctx);
  if (timeout_s > 0) {
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6)));
  }
  if (context_hook) context_hook(&ctx);
  const Clock::time_point t0 = Clock::now();
  Clock::time_point last{};
  std::unique_ptr<grpc::ClientReader<sliminfer::v1::GenerateResponse>> reader = stub.Generate(&ctx, request);
  sliminfer::v1::GenerateResponse r;
  while (reader->Read(&r)) {
    const Clock::time_point now = Clock::now();
    switch (r.event_case()) {
      case sliminfer::v1::GenerateResponse::kStarted:
        out.started = r.started();
        out.has_started = true;
        break;
      case sliminfer::v1::GenerateResponse::kChunk: {
        const sliminfer::v1::TokenChunk& c = r.chunk();
        if (c.token_ids_size() > 0) {
          if (out.ttft_ms < 0) out.ttft_ms = ms(t0, now);
          else out.chunk_gaps_ms.push_back(ms(last, now));
          last = now;
        }
        out.text += c.text();
        out.token_ids.insert(out.token_ids.end(), c.token_ids().begin(), c.token_ids().end());
        if (on_chunk) on_chunk(c);
        break;
      }
      case sliminfer::v1::GenerateResponse::kFinished:
        out.finished = r.finished();
        out.has_finished = true;
        break;
      default:
        break;
    }
  }
  out.status = reader->Finish();
  out.e2e_ms = ms(t0, Clock::now());
  return out;
}

}  // namespace slim::client
