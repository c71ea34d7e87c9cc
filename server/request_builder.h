// Turns API requests (protobuf) into validated engine-side requests: every malformed or
// out-of-range field becomes INVALID_ARGUMENT with a message naming the field, e.g.
// "sampling.top_p must be in (0, 1], got 1.5" or "prompt: 9000 tokens exceed the model context
// of 8192". Tokenization and chat templating happen here, on the RPC thread.
// Thread-safety: free functions over a const Engine (whose tokenizer is thread-safe).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "server/generation.h"
#include "sliminfer/v1/inference.pb.h"

namespace slim::server {

struct RequestLimits {
  int32_t max_prompt_tokens = 0;    // resolved: in [1, context]
  int32_t max_total_tokens = 0;     // prompt + max_tokens, resolved: in [2, context]
  int32_t default_max_tokens = 128; // for stopping.max_tokens == 0
  PruningMode server_pruning = PruningMode::kOff;  // what MODE_UNSPECIFIED means
};

// Most stop_token_ids one request may carry.
inline constexpr int kMaxStopTokenIds = 64;

// Validates `in` and tokenizes its input. The deadline is left unset (the RPC layer adds it).
StatusOr<GenerationRequest> BuildGenerationRequest(const sliminfer::v1::GenerateRequest& in, const Engine& engine,
                                                   const RequestLimits& limits);

// Validates a request id: empty (the server assigns one) or 1..128 printable ASCII characters
// not starting with the server's prefix ("req-").
Status ValidateRequestId(const std::string& id);

// Token ids for a Tokenize request. Texts that cannot fit the model context are refused before
// encoding, as prompts are.
StatusOr<std::vector<int32_t>> TokenizeRequest(const sliminfer::v1::TokenizeRequest& in, const Engine& engine);

}  // namespace slim::server
