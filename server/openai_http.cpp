// OpenAI-compatible routes: request handling, response and SSE chunk JSON, error objects.
#include "server/openai_http.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>
#include <memory>

#include <nlohmann/json.hpp>

#include "server/api_key.h"
#include "server/http_generation.h"
#include "server/http_listener.h"
#include "server/openai_request.h"
#include "server/quote.h"

namespace slim::server {
namespace {

using json = nlohmann::json;
using Event = HttpGeneration::Event;

// Invalid UTF-8 (a token's raw bytes) is replaced rather than thrown on.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string LowerName(StatusCode code) {
  std::string s = StatusCodeName(code);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

const char* ErrorType(int http) {
  switch (http) {
    case 400: case 413: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 409: return "conflict_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable_error";
    case 504: return "timeout_error";
    default: return "server_error";
  }
}

json ErrorObject(const std::string& message, int http, const std::string& param, const std::string& code) {
  return json{{"error",
               {{"message", message},
                {"type", ErrorType(http)},
                {"param", param.empty() ? json(nullptr) : json(param)},
                {"code", code}}}};
}

// The error object of a status; INVALID_ARGUMENT names the OpenAI parameter.
json StatusError(const Status& s, OpenAiEndpoint endpoint, int* http) {
  *http = HttpStatusFor(s.code());
  OpenAiParamError p{"", s.message()};
  if (s.code() == StatusCode::kInvalidArgument) p = ToOpenAiParam(s.message(), endpoint);
  return ErrorObject(p.message, *http, p.param, LowerName(s.code()));
}

void SetJson(httplib::Response& res, int http, const json& body) {
  res.status = http;
  res.set_content(Dump(body), "application/json");
}

json Usage(const FinishedEvent& f) {
  return {{"prompt_tokens", f.prompt_tokens},
          {"completion_tokens", f.completion_tokens},
          {"total_tokens", f.prompt_tokens + f.completion_tokens}};
}

json Pruning(const PruningSummary& s) {
  json stages = json::array();
  for (const auto& st : s.stages) stages.push_back({{"layer", st.layer}, {"tokens_kept", st.tokens_kept}});
  return {{"applied", s.applied},
          {"prompt_tokens", s.prompt_tokens},
          {"stages", stages},
          {"kv_bytes", s.kv_bytes},
          {"dense_kv_bytes", s.dense_kv_bytes}};
}

const char* FinishReasonString(FinishReason r) { return r == FinishReason::kLength ? "length" : "stop"; }

// What every response object and chunk of one request repeats.
struct ResponseInfo {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kChat;
  std::string id;
  int64_t created = 0;
  std::string model;
  bool logprobs = false;
  bool include_usage = false;
  const Tokenizer* tokenizer = nullptr;

  bool chat() const { return endpoint == OpenAiEndpoint::kChat; }
  std::string TokenText(int32_t id) const {
    return tokenizer != nullptr ? tokenizer->TokenBytes(id) : "<" + std::to_string(id) + ">";
  }
};

json Bytes(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

// Logprobs of the tokens of one response or chunk, in the endpoint's format: chat
// {"content": [{token, logprob, bytes, top_logprobs}]}, completions {tokens, token_logprobs,
// top_logprobs, text_offset}.
class Logprobs {
 public:
  explicit Logprobs(const ResponseInfo& info) : info_(info) {}
  void Add(const HttpGeneration::Token& t, size_t text_offset) {
    if (!t.has_logprob || t.token < 0) return;
    const std::string text = info_.TokenText(t.token);
    if (info_.chat()) {
      json top = json::array();
      for (const TokenLogprob& x : t.top) {
        const std::string s = info_.TokenText(x.id);
        top.push_back({{"token", s}, {"logprob", x.logprob}, {"bytes", Bytes(s)}});
      }
      content_.push_back({{"token", text}, {"logprob", t.logprob}, {"bytes", Bytes(text)}, {"top_logprobs", top}});
    } else {
      json top = json::object();
      for (const TokenLogprob& x : t.top) top[info_.TokenText(x.id)] = x.logprob;
      tokens_.push_back(text);
      token_logprobs_.push_back(t.logprob);
      top_logprobs_.push_back(top);
      text_offset_.push_back(text_offset);
    }
  }
  json ToJson() const {
    if (!info_.logprobs) return nullptr;
    if (info_.chat()) return {{"content", content_}};
    return {{"tokens", tokens_},
            {"token_logprobs", token_logprobs_},
            {"top_logprobs", top_logprobs_},
            {"text_offset", text_offset_}};
  }

 private:
  const ResponseInfo& info_;
  json content_ = json::array();
  json tokens_ = json::array(), token_logprobs_ = json::array(), top_logprobs_ = json::array(),
       text_offset_ = json::array();
};

// One streamed chunk with one choice: a text delta, its logprobs, the finish reason or null.
json Chunk(const ResponseInfo& info, const std::string* text, const json& logprobs, const json& finish_reason,
           bool role = false) {
  json choice = {{"index", 0}, {"logprobs", logprobs}, {"finish_reason", finish_reason}};
  if (info.chat()) {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    if (text != nullptr) delta["content"] = *text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text != nullptr ? *text : "";
  }
  json c = {{"id", info.id},
            {"object", info.chat() ? "chat.completion.chunk" : "text_completion"},
            {"created", info.created},
            {"model", info.model},
            {"choices", json::array({choice})}};
  if (info.include_usage) c["usage"] = nullptr;
  return c;
}

// Writes the events of a started stream as SSE; returns whether every write reached the client.
bool WriteStream(HttpGeneration& gen, const ResponseInfo& info, httplib::DataSink& sink) {
  auto send = [&sink](const std::string& data) {
    const std::string event = "data: " + data + "\n\n";
    return sink.write(event.data(), event.size());
  };
  bool ok = true;
  if (info.chat()) {
    const std::string empty;
    ok = send(Dump(Chunk(info, &empty, nullptr, nullptr, /*role=*/true)));
  }
  Status end;
  FinishedEvent finished;
  size_t offset = 0;
  std::string tail;
  for (;;) {
    if (!ok) gen.Cancel(CancelledError("client went away"));
    Event e = gen.Next(HttpListener::PeerConnected);
    if (e.kind == Event::Kind::kFinished) {
      finished = e.finished;
      break;
    }
    if (e.kind == Event::Kind::kError) {
      end = e.status;
      break;
    }
    if (e.kind != Event::Kind::kToken || !ok) continue;
    if (e.token.token < 0) {  // text held back until the end: it goes out with the last chunk
      tail += e.token.text;
      continue;
    }
    Logprobs lp(info);
    lp.Add(e.token, offset);
    offset += e.token.text.size();
    ok = send(Dump(Chunk(info, &e.token.text, lp.ToJson(), nullptr)));  // one event per token, sent now
  }
  if (ok && end.ok()) {
    json last = Chunk(info, info.chat() && tail.empty() ? nullptr : &tail, nullptr, FinishReasonString(finished.reason));
    last["pruning"] = Pruning(finished.pruning);
    ok = send(Dump(last));
    if (ok && info.include_usage) {
      json usage = Chunk(info, nullptr, nullptr, nullptr);
      usage["choices"] = json::array();
      usage["usage"] = Usage(finished);
      ok = send(Dump(usage));
    }
  } else if (ok) {
    int http = 0;
    ok = send(Dump(StatusError(end, info.endpoint, &http)));
  }
  if (ok) ok = send("[DONE]");
  if (ok) sink.done();
  gen.Finish(ok ? end : CancelledError("the client went away during the stream"));
  return ok;
}

Clock::TimePoint DeadlineFrom(const httplib::Request& req, Status* error) {
  if (!req.has_header("X-Request-Timeout")) return Clock::TimePoint::max();
  const std::string v = req.get_header_value("X-Request-Timeout");
  char* end = nullptr;
  const double s = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(s) || s <= 0 || s > 1e6) {
    *error = InvalidArgumentError("X-Request-Timeout: must be seconds in (0, 1e6], got " + QuoteClientValue(v));
    return Clock::TimePoint::max();
  }
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument: case StatusCode::kOutOfRange: case StatusCode::kFailedPrecondition: return 400;
    case StatusCode::kUnauthenticated: return 401;
    case StatusCode::kPermissionDenied: return 403;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kAlreadyExists: case StatusCode::kAborted: return 409;
    case StatusCode::kResourceExhausted: return 429;
    case StatusCode::kCancelled: return 499;
    case StatusCode::kUnimplemented: return 501;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

OpenAiHttpApi::OpenAiHttpApi(const InferenceService* service, const ServerMetrics* metrics, OpenAiHttpOptions options)
    : service_(service), metrics_(metrics), options_(std::move(options)), created_(std::time(nullptr)) {}

void OpenAiHttpApi::AddMetricsRoutes(httplib::Server& server) const {
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const Status s = service_->Admissible();
    if (s.ok()) SetJson(res, 200, {{"status", "SERVING"}});
    else SetJson(res, 503, {{"status", "NOT_SERVING"}, {"reason", s.message()}});
  });
  // Routing misses and httplib's own refusals (413, bad request lines) as OpenAI error objects.
  const size_t max_body = options_.max_body_bytes;
  server.set_error_handler(httplib::Server::HandlerWithResponse([max_body](const httplib::Request& req,
                                                                         httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    if (res.status == 404) {
      SetJson(res, 404, ErrorObject("no route " + req.method + " " + QuoteClientValue(req.path), 404, "", "not_found"));
    } else if (res.status == 413) {
      SetJson(res, 413, ErrorObject("request body exceeds " + std::to_string(max_body) + " bytes (--http-max-body-bytes)",
                                    413, "", "request_too_large"));
    } else {
      const int status = res.status;
      SetJson(res, status, ErrorObject("HTTP " + std::to_string(status), status, "", "http_" + std::to_string(status)));
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    SetJson(res, 500, ErrorObject("internal error: " + what, 500, "", "internal"));
  });
}

void OpenAiHttpApi::AddRoutes(httplib::Server& server) const {
  AddMetricsRoutes(server);
  auto authorized = [this](const httplib::Request& req) {
    return CheckBearer(service_->context().api_key, req.get_header_value("Authorization"));
  };
  auto models = [this, authorized](const httplib::Request& req, httplib::Response& res) {
    Status s = authorized(req);
    if (s.ok()) s = service_->Admissible();
    int http = 0;
    if (!s.ok()) return SetJson(res, HttpStatusFor(s.code()), StatusError(s, OpenAiEndpoint::kChat, &http));
    const json model = {{"id", options_.served_model_name},
                        {"object", "model"},
                        {"created", created_},
                        {"owned_by", "sliminfer"},
                        {"max_model_len", service_->context().engine->context_length()}};
    if (req.matches.size() > 1 && req.matches[1] != options_.served_model_name) {
      return SetJson(res, 404, ErrorObject("model " + QuoteClientValue(req.matches[1].str()) + " does not exist", 404,
                                           "model", "model_not_found"));
    }
    SetJson(res, 200, req.matches.size() > 1 ? model : json{{"object", "list"}, {"data", json::array({model})}});
  };
  server.Get("/v1/models", models);
  server.Get(R"(/v1/models/(.+))", models);

  auto generate = [this, authorized](OpenAiEndpoint endpoint, const httplib::Request& req, httplib::Response& res) {
    auto gen = std::make_shared<HttpGeneration>(service_->context(),
                                                "ipv4:" + req.remote_addr + ":" + std::to_string(req.remote_port));
    auto fail = [&](const Status& s) {
      int http = 0;
      const json body = StatusError(s, endpoint, &http);
      SetJson(res, http, body);
      gen->Finish(s);
    };
    if (Status s = authorized(req); !s.ok()) return fail(s);
    if (Status s = service_->Admissible(); !s.ok()) return fail(s);
    const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) return fail(InvalidArgumentError("body: is not valid JSON"));
    StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(body, endpoint);
    if (!parsed.ok()) return fail(parsed.status());
    if (!parsed->model.empty() && parsed->model != options_.served_model_name) {
      SetJson(res, 404, ErrorObject("model " + QuoteClientValue(parsed->model) + " does not exist; this server serves '" +
                                        options_.served_model_name + "'",
                                    404, "model", "model_not_found"));
      gen->Finish(NotFoundError("unknown model " + QuoteClientValue(parsed->model)));
      return;
    }
    Status deadline_error;
    const Clock::TimePoint deadline = DeadlineFrom(req, &deadline_error);
    if (!deadline_error.ok()) return fail(deadline_error);
    if (req.has_header("X-Request-Id")) parsed->generate.set_request_id(req.get_header_value("X-Request-Id"));
    if (Status s = gen->Submit(parsed->generate, deadline); !s.ok()) return fail(s);

    auto info = std::make_shared<ResponseInfo>();
    info->endpoint = endpoint;
    info->id = (endpoint == OpenAiEndpoint::kChat ? "chatcmpl-" : "cmpl-") + gen->request_id();
    info->created = std::time(nullptr);
    info->model = options_.served_model_name;
    info->logprobs = parsed->logprobs;
    info->include_usage = parsed->include_usage;
    info->tokenizer = service_->context().engine->tokenizer();

    if (parsed->stream) {
      // Commit to 200 only once the request has started, so that a request that fails in the
      // queue (deadline, drain) still gets its HTTP status.
      Event first = gen->Next(HttpListener::PeerConnected);
      if (first.kind == Event::Kind::kError) return fail(first.status);
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");  // proxies: do not buffer the stream
      res.set_chunked_content_provider("text/event-stream", [gen, info](size_t, httplib::DataSink& sink) {
        return WriteStream(*gen, *info, sink);
      });
      return;
    }

    std::string text;
    Logprobs lp(*info);
    FinishedEvent finished;
    for (;;) {
      Event e = gen->Next(HttpListener::PeerConnected);
      if (e.kind == Event::Kind::kError) return fail(e.status);
      if (e.kind == Event::Kind::kFinished) {
        finished = e.finished;
        break;
      }
      if (e.kind != Event::Kind::kToken) continue;
      lp.Add(e.token, text.size());
      text += e.token.text;
    }
    json choice = {{"index", 0}, {"logprobs", lp.ToJson()}, {"finish_reason", FinishReasonString(finished.reason)}};
    if (info->chat()) choice["message"] = {{"role", "assistant"}, {"content", text}};
    else choice["text"] = text;
    SetJson(res, 200,
            {{"id", info->id},
             {"object", info->chat() ? "chat.completion" : "text_completion"},
             {"created", info->created},
             {"model", info->model},
             {"choices", json::array({choice})},
             {"usage", Usage(finished)},
             {"pruning", Pruning(finished.pruning)}});
    gen->Finish(HttpListener::PeerConnected() ? OkStatus()
                                              : CancelledError("the client went away before the response was written"));
  };
  server.Post("/v1/chat/completions", [generate](const httplib::Request& req, httplib::Response& res) {
    generate(OpenAiEndpoint::kChat, req, res);
  });
  server.Post("/v1/completions", [generate](const httplib::Request& req, httplib::Response& res) {
    generate(OpenAiEndpoint::kCompletions, req, res);
  });
}

}  // namespace slim::server
