// OpenAI request JSON -> GenerateRequest, and builder messages -> OpenAI parameter names.
#include "server/openai_request.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include <nlohmann/json.hpp>

namespace slim::server {
namespace {

using json = nlohmann::json;
namespace v1 = sliminfer::v1;

Status Bad(const std::string& param, const std::string& why) { return InvalidArgumentError(param + ": " + why); }

// Present and not null (clients send null for "not set").
bool Has(const json& b, const char* key) {
  auto it = b.find(key);
  return it != b.end() && !it->is_null();
}

StatusOr<double> Number(const json& v, const std::string& param) {
  if (!v.is_number()) return Bad(param, "must be a number");
  return v.get<double>();
}

StatusOr<int64_t> Integer(const json& v, const std::string& param, int64_t lo = std::numeric_limits<int32_t>::min(),
                          int64_t hi = std::numeric_limits<int32_t>::max()) {
  int64_t x = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Bad(param, "is out of range");
    }
    x = v.get<int64_t>();
  } else if (v.is_number_float() && std::nearbyint(v.get<double>()) == v.get<double>() &&
             std::fabs(v.get<double>()) < 9e18) {
    x = static_cast<int64_t>(v.get<double>());
  } else {
    return Bad(param, "must be an integer");
  }
  if (x < lo || x > hi) {
    return Bad(param, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(x));
  }
  return x;
}

StatusOr<bool> Bool(const json& v, const std::string& param) {
  if (!v.is_boolean()) return Bad(param, "must be true or false");
  return v.get<bool>();
}

StatusOr<std::string> String(const json& v, const std::string& param) {
  if (!v.is_string()) return Bad(param, "must be a string");
  return v.get<std::string>();
}

StatusOr<std::string> Content(const json& v, const std::string& param) {
  if (v.is_null()) return std::string();
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) return Bad(param, "must be a string or a list of text parts");
  std::string out;
  for (size_t j = 0; j < v.size(); ++j) {
    const json& part = v[j];
    const std::string where = param + "[" + std::to_string(j) + "]";
    if (!part.is_object()) return Bad(where, "must be an object {\"type\": \"text\", \"text\": ...}");
    if (!Has(part, "type") || part["type"] != "text") return Bad(where + ".type", "only \"text\" parts are supported");
    if (!Has(part, "text")) return Bad(where + ".text", "is required");
    SLIM_ASSIGN_OR_RETURN(std::string text, String(part["text"], where + ".text"));
    out += text;
  }
  return out;
}

Status ParseMessages(const json& b, v1::GenerateRequest* g) {
  if (!Has(b, "messages")) return Bad("messages", "is required");
  const json& ms = b["messages"];
  if (!ms.is_array()) return Bad("messages", "must be a list of messages");
  v1::ChatMessages* chat = g->mutable_chat();
  for (size_t i = 0; i < ms.size(); ++i) {
    const json& m = ms[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return Bad(where, "must be an object with role and content");
    if (!Has(m, "role")) return Bad(where + ".role", "is required");
    SLIM_ASSIGN_OR_RETURN(std::string role, String(m["role"], where + ".role"));
    if (role == "developer") role = "system";  // OpenAI's newer name for the system role
    std::string content;
    if (m.contains("content")) {
      SLIM_ASSIGN_OR_RETURN(content, Content(m["content"], where + ".content"));
    }
    v1::ChatMessage* out = chat->add_messages();
    out->set_role(role);
    out->set_content(content);
  }
  return OkStatus();
}

Status ParsePrompt(const json& b, v1::GenerateRequest* g) {
  if (!Has(b, "prompt")) return Bad("prompt", "is required");
  const json* p = &b["prompt"];
  // A list of one prompt (a string or token ids) is one prompt; longer lists are batches.
  if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) p = &(*p)[0];
  if (p->is_string()) {
    g->set_prompt(p->get<std::string>());
    return OkStatus();
  }
  if (!p->is_array()) return Bad("prompt", "must be a string or a list of token ids");
  if (p->empty()) return Bad("prompt", "is empty");
  v1::TokenIds* ids = g->mutable_token_ids();
  for (size_t i = 0; i < p->size(); ++i) {
    if (!(*p)[i].is_number()) {
      return Bad("prompt", "a list of several prompts is not supported: send one prompt per request");
    }
    SLIM_ASSIGN_OR_RETURN(int64_t id, Integer((*p)[i], "prompt[" + std::to_string(i) + "]"));
    ids->add_ids(static_cast<int32_t>(id));
  }
  return OkStatus();
}

Status ParsePruning(const json& p, v1::PruningOptions* out) {
  if (!p.is_object()) return Bad("pruning", "must be an object such as {\"mode\": \"default\"}");
  std::string mode = Has(p, "stages") ? "explicit" : "";
  if (Has(p, "mode")) {
    SLIM_ASSIGN_OR_RETURN(mode, String(p["mode"], "pruning.mode"));
  }
  if (mode == "off") out->set_mode(v1::PruningOptions::MODE_OFF);
  else if (mode == "default") out->set_mode(v1::PruningOptions::MODE_DEFAULT);
  else if (mode == "explicit") out->set_mode(v1::PruningOptions::MODE_EXPLICIT);
  else if (!mode.empty()) return Bad("pruning.mode", "must be off, default or explicit");
  if (Has(p, "prune_after_attention")) {
    SLIM_ASSIGN_OR_RETURN(bool after, Bool(p["prune_after_attention"], "pruning.prune_after_attention"));
    out->set_prune_after_attention(after);
  }
  if (!Has(p, "stages")) return OkStatus();
  const json& stages = p["stages"];
  if (!stages.is_array()) return Bad("pruning.stages", "must be a list of {layer, tokens | fraction}");
  for (size_t i = 0; i < stages.size(); ++i) {
    const json& s = stages[i];
    const std::string where = "pruning.stages[" + std::to_string(i) + "]";
    if (!s.is_object() || !Has(s, "layer")) return Bad(where, "must be an object with layer and tokens or fraction");
    v1::PruneStage* st = out->add_stages();
    SLIM_ASSIGN_OR_RETURN(int64_t layer, Integer(s["layer"], where + ".layer"));
    st->set_layer(static_cast<int32_t>(layer));
    if (Has(s, "tokens") == Has(s, "fraction")) return Bad(where, "set one of tokens or fraction");
    if (Has(s, "tokens")) {
      SLIM_ASSIGN_OR_RETURN(int64_t tokens, Integer(s["tokens"], where + ".tokens", 1, std::numeric_limits<int32_t>::max()));
      st->set_tokens(tokens);
    } else {
      SLIM_ASSIGN_OR_RETURN(double f, Number(s["fraction"], where + ".fraction"));
      st->set_fraction(f);
    }
  }
  return OkStatus();
}

// Options this server does not implement, refused unless they hold their no-op value.
Status RefuseUnsupported(const json& b) {
  if (Has(b, "echo") && b["echo"] != false) return Bad("echo", "is not supported");
  if (Has(b, "best_of") && b["best_of"] != 1) return Bad("best_of", "only best_of = 1 is supported");
  if (Has(b, "suffix") && b["suffix"] != "") return Bad("suffix", "is not supported");
  if (Has(b, "logit_bias") && !b["logit_bias"].empty()) return Bad("logit_bias", "is not supported");
  if (Has(b, "tools") && !b["tools"].empty()) return Bad("tools", "tool calls are not supported");
  if (Has(b, "functions") && !b["functions"].empty()) return Bad("functions", "function calls are not supported");
  if (Has(b, "response_format") &&
      !(b["response_format"].is_object() && b["response_format"].value("type", "") == "text")) {
    return Bad("response_format", "only {\"type\": \"text\"} is supported");
  }
  return OkStatus();
}

}  // namespace

StatusOr<OpenAiRequest> ParseOpenAiRequest(const json& b, OpenAiEndpoint endpoint) {
  if (!b.is_object()) return InvalidArgumentError("body: must be a JSON object");
  OpenAiRequest r;
  r.endpoint = endpoint;
  const bool chat = endpoint == OpenAiEndpoint::kChat;
  v1::GenerateRequest& g = r.generate;
  SLIM_RETURN_IF_ERROR(RefuseUnsupported(b));
  if (Has(b, "model")) {
    SLIM_ASSIGN_OR_RETURN(r.model, String(b["model"], "model"));
  }
  if (Has(b, "stream")) {
    SLIM_ASSIGN_OR_RETURN(r.stream, Bool(b["stream"], "stream"));
  }
  if (Has(b, "stream_options")) {
    const json& so = b["stream_options"];
    if (!r.stream) return Bad("stream_options", "only allowed with stream: true");
    if (!so.is_object()) return Bad("stream_options", "must be an object");
    if (Has(so, "include_usage")) {
      SLIM_ASSIGN_OR_RETURN(r.include_usage, Bool(so["include_usage"], "stream_options.include_usage"));
    }
  }
  if (Has(b, "n")) {
    SLIM_ASSIGN_OR_RETURN(int64_t n, Integer(b["n"], "n"));
    if (n != 1) return Bad("n", "only n = 1 is supported, got " + std::to_string(n));
  }
  if (Has(b, "user")) {
    SLIM_ASSIGN_OR_RETURN(r.user, String(b["user"], "user"));
  }
  SLIM_RETURN_IF_ERROR(chat ? ParseMessages(b, &g) : ParsePrompt(b, &g));

  v1::SamplingOptions* s = g.mutable_sampling();
  auto number = [&](const char* key, auto set) -> Status {
    if (!Has(b, key)) return OkStatus();
    SLIM_ASSIGN_OR_RETURN(double v, Number(b[key], key));
    set(static_cast<float>(v));
    return OkStatus();
  };
  SLIM_RETURN_IF_ERROR(number("temperature", [&](float v) { s->set_temperature(v); }));
  SLIM_RETURN_IF_ERROR(number("top_p", [&](float v) { s->set_top_p(v); }));
  SLIM_RETURN_IF_ERROR(number("min_p", [&](float v) { s->set_min_p(v); }));
  SLIM_RETURN_IF_ERROR(number("repetition_penalty", [&](float v) { s->set_repetition_penalty(v); }));
  SLIM_RETURN_IF_ERROR(number("presence_penalty", [&](float v) { s->set_presence_penalty(v); }));
  SLIM_RETURN_IF_ERROR(number("frequency_penalty", [&](float v) { s->set_frequency_penalty(v); }));
  if (Has(b, "top_k")) {
    SLIM_ASSIGN_OR_RETURN(int64_t k, Integer(b["top_k"], "top_k", -1));
    s->set_top_k(k < 0 ? 0 : static_cast<int32_t>(k));  // vLLM: -1 = off
  }
  if (Has(b, "seed")) {
    SLIM_ASSIGN_OR_RETURN(int64_t seed, Integer(b["seed"], "seed", std::numeric_limits<int64_t>::min(),
                                                std::numeric_limits<int64_t>::max()));
    s->set_seed(static_cast<uint64_t>(seed));
  }
  if (chat) {
    if (Has(b, "logprobs")) {
      SLIM_ASSIGN_OR_RETURN(r.logprobs, Bool(b["logprobs"], "logprobs"));
    }
    if (Has(b, "top_logprobs")) {
      SLIM_ASSIGN_OR_RETURN(int64_t n, Integer(b["top_logprobs"], "top_logprobs", 0, 20));
      if (!r.logprobs) return Bad("top_logprobs", "requires logprobs: true");
      r.top_logprobs = static_cast<int>(n);
    }
  } else if (Has(b, "logprobs")) {
    SLIM_ASSIGN_OR_RETURN(int64_t n, Integer(b["logprobs"], "logprobs", 0, 20));
    r.logprobs = true;
    r.top_logprobs = static_cast<int>(n);
  }
  if (r.logprobs) s->set_logprobs(r.top_logprobs);

  v1::StoppingOptions* st = g.mutable_stopping();
  for (const char* key : {"max_completion_tokens", "max_tokens"}) {
    if (!Has(b, key) || (std::string(key) == "max_completion_tokens" && !chat)) continue;
    SLIM_ASSIGN_OR_RETURN(int64_t n, Integer(b[key], key, 1));
    st->set_max_tokens(static_cast<int32_t>(n));
    break;
  }
  if (Has(b, "stop")) {
    const json& stop = b["stop"];
    if (stop.is_string()) {
      st->add_stop(stop.get<std::string>());
    } else if (stop.is_array()) {
      for (size_t i = 0; i < stop.size(); ++i) {
        SLIM_ASSIGN_OR_RETURN(std::string one, String(stop[i], "stop[" + std::to_string(i) + "]"));
        st->add_stop(one);
      }
    } else {
      return Bad("stop", "must be a string or a list of strings");
    }
  }
  if (Has(b, "stop_token_ids")) {
    const json& ids = b["stop_token_ids"];
    if (!ids.is_array()) return Bad("stop_token_ids", "must be a list of token ids");
    for (size_t i = 0; i < ids.size(); ++i) {
      SLIM_ASSIGN_OR_RETURN(int64_t id, Integer(ids[i], "stop_token_ids[" + std::to_string(i) + "]"));
      st->add_stop_token_ids(static_cast<int32_t>(id));
    }
  }
  if (Has(b, "ignore_eos")) {
    SLIM_ASSIGN_OR_RETURN(bool ignore, Bool(b["ignore_eos"], "ignore_eos"));
    st->set_ignore_eos(ignore);
  }
  if (Has(b, "pruning")) SLIM_RETURN_IF_ERROR(ParsePruning(b["pruning"], g.mutable_pruning()));
  return r;
}

OpenAiParamError ToOpenAiParam(const std::string& message, OpenAiEndpoint endpoint) {
  std::string m = message;
  for (const char* prefix : {"sampling.", "stopping: ", "stopping."}) {
    if (m.starts_with(prefix)) {
      m = m.substr(std::string(prefix).size());
      break;
    }
  }
  auto rename = [&m](const std::string& from, const std::string& to) {
    if (m.starts_with(from)) m = to + m.substr(from.size());
  };
  rename("chat.messages", "messages");
  rename("chat", "messages");
  rename("token_ids.ids", "prompt");
  rename("stop_strings", "stop");
  if (endpoint == OpenAiEndpoint::kChat) {
    rename("prompt", "messages");
    rename("logprobs", "top_logprobs");
  }
  const size_t end = m.find_first_of(": ");
  std::string param = m.substr(0, end == std::string::npos ? m.size() : end);
  if (param.starts_with("stop[")) param = "stop";
  if (param == "input" || param == "body") param.clear();
  return OpenAiParamError{param, m};
}

}  // namespace slim::server
