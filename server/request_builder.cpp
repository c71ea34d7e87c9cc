// Validation of Generate / Tokenize requests and their conversion into engine types.
#include "server/request_builder.h"

#include <cmath>

#include "server/request_registry.h"
#include "server/quote.h"

namespace slim::server {
namespace {

namespace v1 = sliminfer::v1;

Status Prefixed(const Status& s, const std::string& prefix) {
  if (s.ok()) return s;
  return Status(s.code(), prefix + s.message());
}

StatusOr<std::vector<ChatMessage>> ChatFromProto(const v1::ChatMessages& chat, const std::string& field) {
  if (chat.messages().empty()) return InvalidArgumentError(field + ".messages: is empty");
  std::vector<ChatMessage> out;
  for (int i = 0; i < chat.messages_size(); ++i) {
    const v1::ChatMessage& m = chat.messages(i);
    const std::string where = field + ".messages[" + std::to_string(i) + "]";
    if (m.role() != "system" && m.role() != "user" && m.role() != "assistant") {
      return InvalidArgumentError(where + ".role: must be system, user or assistant, got " + QuoteClientValue(m.role()));
    }
    out.push_back(ChatMessage{m.role(), m.content()});
  }
  return out;
}

// Refuses, before any tokenizing, a text of `bytes` bytes that cannot encode to `max_tokens`
// tokens or fewer: encoding a 16 MiB prompt would hold an RPC thread for seconds and allocate
// gigabytes only to be refused by the token limit afterwards.
Status CheckTextBytes(const std::vector<std::string_view>& texts, int64_t max_tokens, const Engine& engine,
                      const std::string& field, const std::string& limit_name) {
  const Tokenizer* tok = engine.tokenizer();
  if (tok == nullptr || tok->max_input_bytes_per_token() == 0) return OkStatus();
  const size_t per_token = tok->max_input_bytes_per_token();
  size_t total = 0;
  for (std::string_view t : texts) total += t.size();
  if (total / per_token <= static_cast<size_t>(max_tokens)) return OkStatus();  // no scan needed
  size_t bytes = 0;
  for (std::string_view t : texts) bytes += tok->CoveredBytes(t);
  if (bytes / per_token <= static_cast<size_t>(max_tokens)) return OkStatus();
  return InvalidArgumentError(field + ": " + std::to_string(bytes) + " bytes need more than " +
                              std::to_string(max_tokens) + " tokens (" + limit_name +
                              "; no token of this vocabulary covers more than " + std::to_string(per_token) +
                              " bytes)");
}

// Chat messages -> token ids, with the field name in every error. `max_tokens` and `limit_name`
// bound the rendered prompt for the cheap checks made before rendering.
StatusOr<std::vector<int32_t>> TokenizeChatField(const v1::ChatMessages& chat, const Engine& engine,
                                                 const std::string& field, int64_t max_tokens,
                                                 const std::string& limit_name) {
  // Every template renders at least one token of markup per message.
  if (chat.messages_size() > max_tokens) {
    return InvalidArgumentError(field + ".messages: " + std::to_string(chat.messages_size()) +
                                " messages need more than " + std::to_string(max_tokens) + " tokens (" +
                                limit_name + ")");
  }
  std::vector<std::string_view> contents;
  for (const v1::ChatMessage& m : chat.messages()) contents.push_back(m.content());
  SLIM_RETURN_IF_ERROR(CheckTextBytes(contents, max_tokens, engine, field + ".messages[*].content", limit_name));
  SLIM_ASSIGN_OR_RETURN(std::vector<ChatMessage> messages, ChatFromProto(chat, field));
  if (engine.chat_template() == nullptr) {
    return InvalidArgumentError(field + ": " + engine.chat_status().message() + "; send prompt or token_ids");
  }
  StatusOr<std::vector<int32_t>> ids = engine.TokenizeChat(messages);
  if (!ids.ok()) return Status(StatusCode::kInvalidArgument, field + ": " + ids.status().message());
  return ids;
}

StatusOr<std::vector<int32_t>> TokenizeText(const std::string& text, bool parse_special, const Engine& engine,
                                            const std::string& field, int64_t max_tokens,
                                            const std::string& limit_name) {
  if (text.empty()) return InvalidArgumentError(field + ": is empty");
  if (engine.tokenizer() == nullptr) {
    return InvalidArgumentError(field + ": this model has no tokenizer (synthetic weights, or a checkpoint without tokenizer.json); send token_ids");
  }
  SLIM_RETURN_IF_ERROR(CheckTextBytes({text}, max_tokens, engine, field, limit_name));
  StatusOr<std::vector<int32_t>> ids = engine.Tokenize(text, parse_special);
  if (!ids.ok()) return Status(StatusCode::kInvalidArgument, field + ": " + ids.status().message());
  return ids;
}

StatusOr<PruningRequest> PruningFromProto(const v1::PruningOptions& p, const Engine& engine,
                                          PruningMode server_default) {
  PruningRequest r;
  switch (p.mode()) {
    case v1::PruningOptions::MODE_UNSPECIFIED: r.mode = server_default; break;
    case v1::PruningOptions::MODE_OFF: r.mode = PruningMode::kOff; break;
    case v1::PruningOptions::MODE_DEFAULT: r.mode = PruningMode::kDefault; break;
    case v1::PruningOptions::MODE_EXPLICIT: r.mode = PruningMode::kExplicit; break;
    default:
      return InvalidArgumentError("pruning.mode: unknown value " + std::to_string(static_cast<int>(p.mode())));
  }
  if (p.has_decode_kv_budget()) {
    if (p.decode_kv_budget() < 0) {
      return InvalidArgumentError("pruning.decode_kv_budget: must be >= 0 (0 = every token), got " +
                                  std::to_string(p.decode_kv_budget()));
    }
    r.decode_kv_budget = p.decode_kv_budget();
  }
  if (r.mode != PruningMode::kExplicit) {
    if (!p.stages().empty()) return InvalidArgumentError("pruning.stages: only allowed with MODE_EXPLICIT");
    if (p.prune_after_attention()) {
      return InvalidArgumentError("pruning.prune_after_attention: only allowed with MODE_EXPLICIT");
    }
    return r;
  }
  if (p.stages().empty()) return InvalidArgumentError("pruning.stages: required with MODE_EXPLICIT");
  r.config.block_tokens = engine.kv().layout().block_tokens;
  r.config.unit_tokens = engine.default_pruning().unit_tokens;
  r.config.query_window = engine.default_pruning().query_window;
  r.config.after_attention = p.prune_after_attention();
  for (int i = 0; i < p.stages_size(); ++i) {
    const v1::PruneStage& s = p.stages(i);
    const std::string where = "pruning.stages[" + std::to_string(i) + "]";
    PruneStage st;
    st.layer = s.layer();
    switch (s.keep_case()) {
      case v1::PruneStage::kTokens:
        if (s.tokens() < 1) return InvalidArgumentError(where + ".tokens: must be >= 1");
        st.keep = static_cast<double>(s.tokens());
        break;
      case v1::PruneStage::kFraction:
        if (!std::isfinite(s.fraction()) || s.fraction() <= 0.0 || s.fraction() >= 1.0) {
          return InvalidArgumentError(where + ".fraction: must be in (0, 1)");
        }
        st.keep = s.fraction();
        st.fraction = true;
        break;
      default:
        return InvalidArgumentError(where + ": set tokens or fraction");
    }
    r.config.stages.push_back(st);
  }
  SLIM_RETURN_IF_ERROR(Prefixed(r.config.Validate(engine.config().n_layers), "pruning.stages: "));
  return r;
}

// The sampling options into r->sampling (and r->want_logprobs), validated.
Status SamplingFromProto(const v1::SamplingOptions& s, int32_t vocab_size, GenerationRequest* r) {
  SamplingParams& sp = r->sampling;
  sp.temperature = s.temperature();
  sp.top_k = s.top_k();
  if (s.has_top_p()) sp.top_p = s.top_p();
  sp.min_p = s.min_p();
  sp.seed = s.seed();
  if (s.has_repetition_penalty()) sp.repetition_penalty = s.repetition_penalty();
  sp.frequency_penalty = s.frequency_penalty();
  sp.presence_penalty = s.presence_penalty();
  if (s.has_penalty_last_n()) sp.penalty_last_n = s.penalty_last_n();
  if (s.has_logprobs()) {
    r->want_logprobs = true;
    sp.logprobs = s.logprobs();
  }
  return Prefixed(sp.Validate(vocab_size), "sampling.");
}

// The stopping options into r->stop for a prompt of n tokens: max_tokens (0 = the server
// default, shrunk to what the limits leave; an explicit value must fit them), stop strings and
// stop token ids, validated.
Status StoppingFromProto(const v1::StoppingOptions& st, int64_t n, int64_t context, const RequestLimits& limits,
                         int32_t vocab_size, GenerationRequest* r) {
  if (st.max_tokens() < 0) {
    return InvalidArgumentError("stopping.max_tokens: must be >= 0 (0 = the server default), got " +
                                std::to_string(st.max_tokens()));
  }
  int64_t max_tokens = st.max_tokens() == 0 ? limits.default_max_tokens : st.max_tokens();
  if (st.max_tokens() == 0) {
    // The default shrinks to what the limits leave; an explicit value must fit them.
    max_tokens = std::min<int64_t>(max_tokens, std::min<int64_t>(limits.max_total_tokens, context) - n);
    if (max_tokens < 1) {
      return InvalidArgumentError("prompt: " + std::to_string(n) + " tokens leave no room to generate within " +
                                  std::to_string(std::min<int64_t>(limits.max_total_tokens, context)) +
                                  " tokens");
    }
  }
  if (n + max_tokens > context) {
    return InvalidArgumentError("stopping.max_tokens: prompt (" + std::to_string(n) + " tokens) + max_tokens (" +
                                std::to_string(max_tokens) + ") exceeds the model context of " +
                                std::to_string(context));
  }
  if (n + max_tokens > limits.max_total_tokens) {
    return InvalidArgumentError("stopping.max_tokens: prompt (" + std::to_string(n) + " tokens) + max_tokens (" +
                                std::to_string(max_tokens) + ") exceeds the server limit of " +
                                std::to_string(limits.max_total_tokens) + " (--max-total-tokens)");
  }
  r->stop.max_tokens = static_cast<int32_t>(max_tokens);
  r->stop.ignore_eos = st.ignore_eos();
  if (st.stop_size() > 16) {
    return InvalidArgumentError("stopping.stop: at most 16 stop strings, got " + std::to_string(st.stop_size()));
  }
  for (int i = 0; i < st.stop_size(); ++i) {
    if (st.stop(i).empty() || st.stop(i).size() > 256) {
      return InvalidArgumentError("stopping.stop[" + std::to_string(i) + "]: must be 1 to 256 bytes");
    }
    r->stop.stop_strings.push_back(st.stop(i));
  }
  if (st.stop_token_ids_size() > kMaxStopTokenIds) {
    return InvalidArgumentError("stopping.stop_token_ids: at most " + std::to_string(kMaxStopTokenIds) +
                                " ids, got " + std::to_string(st.stop_token_ids_size()));
  }
  for (int i = 0; i < st.stop_token_ids_size(); ++i) {
    const int32_t id = st.stop_token_ids(i);
    if (id < 0 || id >= vocab_size) {
      return InvalidArgumentError("stopping.stop_token_ids[" + std::to_string(i) + "]: " + std::to_string(id) +
                                  " is outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
    }
    r->stop.stop_token_ids.push_back(id);
  }
  return Prefixed(r->stop.Validate(vocab_size, static_cast<int32_t>(context)), "stopping: ");
}

}  // namespace

Status ValidateRequestId(const std::string& id) {
  if (id.size() > 128) return InvalidArgumentError("request_id: longer than 128 characters");
  for (char c : id) {
    if (c < 0x21 || c > 0x7E) return InvalidArgumentError("request_id: must be printable ASCII without spaces");
  }
  if (id.starts_with(RequestRegistry::kIdPrefix)) {
    return InvalidArgumentError("request_id: must not start with '" + std::string(RequestRegistry::kIdPrefix) +
                                "' (reserved for server-assigned ids)");
  }
  return OkStatus();
}

StatusOr<GenerationRequest> BuildGenerationRequest(const v1::GenerateRequest& in, const Engine& engine,
                                                   const RequestLimits& limits) {
  const ModelConfig& c = engine.config();
  const int64_t context = engine.context_length();  // the limit in force (may differ from training)
  GenerationRequest r;
  SLIM_RETURN_IF_ERROR(ValidateRequestId(in.request_id()));
  // The tighter of the two prompt limits, for the checks made before tokenizing.
  const bool server_limit = limits.max_prompt_tokens < context;
  const int64_t prompt_limit = server_limit ? limits.max_prompt_tokens : context;
  const std::string limit_name = server_limit ? "the server limit, --max-prompt-tokens" : "the model context";
  r.request_id = in.request_id();

  // Input.
  switch (in.input_case()) {
    case v1::GenerateRequest::kPrompt: {
      SLIM_ASSIGN_OR_RETURN(r.prompt, TokenizeText(in.prompt(), false, engine, "prompt", prompt_limit, limit_name));
      break;
    }
    case v1::GenerateRequest::kChat: {
      SLIM_ASSIGN_OR_RETURN(r.prompt, TokenizeChatField(in.chat(), engine, "chat", prompt_limit, limit_name));
      break;
    }
    case v1::GenerateRequest::kTokenIds: {
      const auto& ids = in.token_ids().ids();
      if (ids.empty()) return InvalidArgumentError("token_ids.ids: is empty");
      for (int i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= c.vocab_size) {
          return InvalidArgumentError("token_ids.ids[" + std::to_string(i) + "]: " + std::to_string(ids[i]) +
                                      " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
        }
      }
      r.prompt.assign(ids.begin(), ids.end());
      break;
    }
    default:
      return InvalidArgumentError("input: set one of prompt, chat or token_ids");
  }
  const int64_t n = static_cast<int64_t>(r.prompt.size());
  if (n == 0) {
    // Text made only of bytes the vocabulary has no token for (some control characters).
    return InvalidArgumentError(std::string(in.input_case() == v1::GenerateRequest::kChat ? "chat" : "prompt") +
                                ": encodes to no tokens (none of its characters has a token in this vocabulary)");
  }
  if (n > context) {
    return InvalidArgumentError("prompt: " + std::to_string(n) + " tokens exceed the model context of " +
                                std::to_string(context));
  }
  if (n > limits.max_prompt_tokens) {
    return InvalidArgumentError("prompt: " + std::to_string(n) + " tokens exceed the server limit of " +
                                std::to_string(limits.max_prompt_tokens) + " (--max-prompt-tokens)");
  }

  SLIM_RETURN_IF_ERROR(SamplingFromProto(in.sampling(), c.vocab_size, &r));
  SLIM_RETURN_IF_ERROR(StoppingFromProto(in.stopping(), n, context, limits, c.vocab_size, &r));

  // Pruning.
  SLIM_ASSIGN_OR_RETURN(r.pruning, PruningFromProto(in.pruning(), engine, limits.server_pruning));
  return r;
}

StatusOr<std::vector<int32_t>> TokenizeRequest(const v1::TokenizeRequest& in, const Engine& engine) {
  switch (in.input_case()) {
    case v1::TokenizeRequest::kText:
      return TokenizeText(in.text(), in.parse_special(), engine, "text", engine.context_length(),
                          "the model context");
    case v1::TokenizeRequest::kChat:
      return TokenizeChatField(in.chat(), engine, "chat", engine.context_length(), "the model context");
    default:
      return InvalidArgumentError("input: set one of text or chat");
  }
}

}  // namespace slim::server
