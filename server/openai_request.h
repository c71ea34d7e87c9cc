// OpenAI request bodies (/v1/chat/completions, /v1/completions) turned into the GenerateRequest
// that the gRPC front end also builds, so both go through one validation path
// (BuildGenerationRequest): this file checks JSON types and the OpenAI-only options, and maps the
// builder's field names ("sampling.top_p", "stopping.max_tokens") back to OpenAI parameter
// names ("top_p", "max_tokens") for error objects.
// Thread-safety: free functions, no state.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "engine/core/status.h"
#include "sliminfer/v1/inference.pb.h"

namespace slim::server {

enum class OpenAiEndpoint { kChat, kCompletions };

struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kChat;
  std::string model;                    // as sent ("" when absent)
  bool stream = false;
  bool include_usage = false;           // stream_options.include_usage: a last chunk with usage
  bool logprobs = false;                // report logprobs in the response
  int top_logprobs = 0;
  std::string user;
  sliminfer::v1::GenerateRequest generate;  // for BuildGenerationRequest
};

// INVALID_ARGUMENT "<param>: <why>" for a wrong JSON type, an out-of-range OpenAI-only value, or
// an option this server does not implement (n > 1, tools, ...). Unknown fields are ignored, as
// OpenAI's own server does for fields it has retired.
StatusOr<OpenAiRequest> ParseOpenAiRequest(const nlohmann::json& body, OpenAiEndpoint endpoint);

struct OpenAiParamError {
  std::string param;    // the OpenAI parameter, e.g. "top_p" or "messages[1].role" ("" if none)
  std::string message;  // with OpenAI names
};

// The parameter a validation message is about and the message in OpenAI terms: strips the
// builder's "sampling." / "stopping." prefixes and renames chat -> messages, token_ids -> prompt.
OpenAiParamError ToOpenAiParam(const std::string& message, OpenAiEndpoint endpoint);

}  // namespace slim::server
