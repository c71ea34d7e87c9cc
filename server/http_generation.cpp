// HttpGeneration: the scheduler-to-handler event queue of one HTTP request and its accounting.
#include "server/http_generation.h"

#include "server/logging.h"
#include "server/quote.h"
#include "server/request_builder.h"

namespace slim::server {
namespace {

double MsSince(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string KeptString(const PruningSummary& s) {
  if (!s.applied) return "off";
  std::string out;
  for (const auto& st : s.stages) {
    out += (out.empty() ? "" : ",") + std::to_string(st.layer) + ":" + std::to_string(st.tokens_kept);
  }
  return out.empty() ? "none" : out;
}

}  // namespace

HttpGeneration::HttpGeneration(const ServiceContext& ctx, std::string peer)
    : ctx_(ctx), peer_(std::move(peer)), arrival_(std::chrono::steady_clock::now()) {}

HttpGeneration::~HttpGeneration() {
  if (submitted_) {
    std::unique_lock<std::mutex> l(mu_);
    if (!ended_) {
      l.unlock();
      Cancel(CancelledError("client went away"));
      l.lock();
      cv_.wait(l, [this] { return ended_; });  // the scheduler calls this sink until then
    }
  }
  Finish(CancelledError("the client went away before the response was complete"));
}

Status HttpGeneration::Submit(const sliminfer::v1::GenerateRequest& request, Clock::TimePoint deadline) {
  request_id_ = request.request_id();
  SLIM_ASSIGN_OR_RETURN(GenerationRequest gen, BuildGenerationRequest(request, *ctx_.engine, ctx_.limits));
  if (gen.request_id.empty()) gen.request_id = ctx_.registry->NewId();
  request_id_ = gen.request_id;
  prompt_tokens_ = static_cast<int32_t>(gen.prompt.size());
  gen.deadline = deadline;
  task_ = std::make_shared<GenerationTask>(std::move(gen), this);
  if (!ctx_.registry->Add(request_id_, task_)) {
    const std::string id = request_id_;
    request_id_ += " (duplicate)";
    return Status(StatusCode::kAlreadyExists,
                  "request_id: " + QuoteClientValue(id) + " is already in use by a live request");
  }
  registered_ = true;
  submitted_ = true;  // before Submit: the scheduler may call back at once
  Status s = ctx_.scheduler->Submit(task_);
  if (!s.ok()) {
    submitted_ = false;
    Terminal();
  }
  return s;
}

HttpGeneration::Event HttpGeneration::Next(const std::function<bool()>& connected) {
  if (terminal_taken_) return Event{Event::Kind::kError, {}, {}, {}, InternalError("the stream is over")};
  std::unique_lock<std::mutex> l(mu_);
  bool cancelled = false;
  while (events_.empty()) {
    cv_.wait_for(l, std::chrono::milliseconds(100));
    if (!events_.empty() || cancelled) continue;
    l.unlock();
    if (!connected()) {
      Cancel(CancelledError("client went away"));
      cancelled = true;
    }
    l.lock();
  }
  Event e = std::move(events_.front());
  events_.pop_front();
  l.unlock();
  const auto now = std::chrono::steady_clock::now();
  switch (e.kind) {
    case Event::Kind::kStarted:
      queue_ms_ = e.started.queue_ms;
      prefill_ms_ = e.started.prefill_ms;
      kept_ = KeptString(e.started.pruning);
      break;
    case Event::Kind::kToken:
      if (e.token.token < 0) break;
      if (tokens_taken_ == 0) {
        first_token_ = now;
        ctx_.metrics->ObserveTtft(MsSince(arrival_, now) / 1e3);
      } else {
        ctx_.metrics->ObserveInterToken(MsSince(last_token_, now) / 1e3);
      }
      last_token_ = now;
      ++tokens_taken_;
      break;
    case Event::Kind::kFinished:
      completion_tokens_ = e.finished.completion_tokens;
      finish_reason_ = FinishReasonName(e.finished.reason);
      decode_ms_ = e.finished.decode_ms;
      terminal_taken_ = true;
      break;
    case Event::Kind::kError:
      terminal_taken_ = true;
      break;
  }
  return e;
}

void HttpGeneration::Cancel(const Status& status) {
  if (task_ && task_->Cancel(status)) ctx_.scheduler->Notify();
}

void HttpGeneration::Finish(const Status& seen) {
  if (finished_) return;
  finished_ = true;
  const auto now = std::chrono::steady_clock::now();
  ctx_.metrics->CountRequest(seen.code());
  if (submitted_) ctx_.metrics->ObserveE2e(MsSince(arrival_, now) / 1e3);
  RequestLogLine line;
  line.request_id = request_id_.empty() ? "-" : request_id_;
  line.peer = peer_;
  line.status = StatusCodeName(seen.code());
  line.message = seen.message();
  line.finish_reason = finish_reason_;
  line.prompt_tokens = prompt_tokens_;
  line.completion_tokens = seen.ok() ? completion_tokens_ : tokens_taken_;
  line.queue_ms = queue_ms_;
  line.prefill_ms = prefill_ms_;
  line.ttft_ms = tokens_taken_ > 0 ? MsSince(arrival_, first_token_) : -1.0;
  line.e2e_ms = MsSince(arrival_, now);
  line.decode_ms_per_token = completion_tokens_ > 1 ? decode_ms_ / (completion_tokens_ - 1) : 0.0;
  line.pruning = kept_;
  LogRequest(line);
}

void HttpGeneration::OnStarted(const StartedEvent& e) {
  Event ev;
  ev.kind = Event::Kind::kStarted;
  ev.started = e;
  Push(std::move(ev));
}

void HttpGeneration::OnToken(const TokenEvent& e) {
  Event ev;
  ev.kind = Event::Kind::kToken;
  ev.token.token = e.token;
  ev.token.text = e.text;
  if (e.sample != nullptr) {  // valid only during this call
    ev.token.has_logprob = true;
    ev.token.logprob = e.sample->logprob;
    ev.token.top = e.sample->top;
  }
  Push(std::move(ev));
}

void HttpGeneration::OnFinished(const FinishedEvent& e) {
  Terminal();
  Event ev;
  ev.kind = Event::Kind::kFinished;
  ev.finished = e;
  Push(std::move(ev));
}

void HttpGeneration::OnError(const Status& status) {
  Terminal();
  Event ev;
  ev.kind = Event::Kind::kError;
  ev.status = status;
  Push(std::move(ev));
}

void HttpGeneration::Push(Event e) {
  std::lock_guard<std::mutex> l(mu_);
  if (e.kind == Event::Kind::kFinished || e.kind == Event::Kind::kError) ended_ = true;
  events_.push_back(std::move(e));
  cv_.notify_all();
}

void HttpGeneration::Terminal() {
  // The request is over: its id is free again and Abort no longer finds it.
  if (registered_) ctx_.registry->Remove(request_id_, task_.get());
}

}  // namespace slim::server
