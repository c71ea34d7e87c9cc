// libFuzzer target for the request path of both front ends, with the real default model's
// tokenizer and chat template: the first input byte picks the entry point, the rest is
//   0: GenerateRequest wire bytes -> ParseRequest (UTF-8 check, protobuf) -> BuildGenerationRequest
//   1: TokenizeRequest wire bytes -> ParseRequest -> TokenizeRequest
//   2: an OpenAI chat body (JSON) -> ParseOpenAiRequest -> BuildGenerationRequest
//   3: an OpenAI completions body, likewise.
// Besides crashes and sanitizer reports it traps on broken invariants: an error that is not
// INVALID_ARGUMENT (or NOT_FOUND for a missing model), a status message longer than the client
// can receive, or an accepted request outside the limits (prompt over the context, ids outside
// the vocabulary, prompt + max_tokens over the total).
// Seeds: tests/fuzz/request_seeds (scripts/fuzz.sh request).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include <grpcpp/support/byte_buffer.h>
#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "tests/fuzz/fuzz_engine.h"
#include "server/openai_request.h"
#include "server/proto_parse.h"
#include "server/request_builder.h"

namespace {

using namespace slim;
using namespace slim::server;

using fuzz::Check;
using fuzz::TheEngine;

RequestLimits Limits(const Engine& e) {
  RequestLimits l;
  l.max_prompt_tokens = 4096;
  l.max_total_tokens = static_cast<int32_t>(e.context_length());
  l.default_max_tokens = 64;
  return l;
}

// Status messages go back to the client in grpc-message trailers: they must stay short.
void CheckError(const Status& s) {
  Check(s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kNotFound);
  Check(s.message().size() <= 1024);
}

void CheckAccepted(const GenerationRequest& r, const Engine& e, const RequestLimits& l) {
  Check(!r.prompt.empty());
  Check(static_cast<int64_t>(r.prompt.size()) <= l.max_prompt_tokens);
  for (int32_t id : r.prompt) Check(id >= 0 && id < e.config().vocab_size);
  Check(r.stop.max_tokens >= 1);
  Check(static_cast<int64_t>(r.prompt.size()) + r.stop.max_tokens <= l.max_total_tokens);
  Check(r.stop.stop_token_ids.size() <= static_cast<size_t>(kMaxStopTokenIds));
}

grpc::ByteBuffer WireBuffer(const uint8_t* data, size_t size) {
  grpc::Slice slice(data, size);
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Engine& engine = TheEngine();
  const RequestLimits limits = Limits(engine);
  const uint8_t which = data[0] % 4;
  ++data;
  --size;
  if (which == 0) {
    sliminfer::v1::GenerateRequest req;
    Status s = ParseRequest(WireBuffer(data, size), &req);
    if (!s.ok()) return CheckError(s), 0;
    StatusOr<GenerationRequest> r = BuildGenerationRequest(req, engine, limits);
    if (!r.ok()) return CheckError(r.status()), 0;
    CheckAccepted(*r, engine, limits);
  } else if (which == 1) {
    sliminfer::v1::TokenizeRequest req;
    Status s = ParseRequest(WireBuffer(data, size), &req);
    if (!s.ok()) return CheckError(s), 0;
    StatusOr<std::vector<int32_t>> ids = TokenizeRequest(req, engine);
    if (!ids.ok()) return CheckError(ids.status()), 0;
    for (int32_t id : *ids) Check(id >= 0 && id < engine.config().vocab_size);
  } else {
    const nlohmann::json body =
        nlohmann::json::parse(reinterpret_cast<const char*>(data), reinterpret_cast<const char*>(data) + size,
                              nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) return 0;
    StatusOr<OpenAiRequest> o =
        ParseOpenAiRequest(body, which == 2 ? OpenAiEndpoint::kChat : OpenAiEndpoint::kCompletions);
    if (!o.ok()) return CheckError(o.status()), 0;
    StatusOr<GenerationRequest> r = BuildGenerationRequest(o->generate, engine, limits);
    if (!r.ok()) return CheckError(r.status()), 0;
    CheckAccepted(*r, engine, limits);
  }
  return 0;
}
