// HttpGeneration: the scheduler-to-handler event queue of one HTTP request and its accounting.
#include "server/http_generation.h"

#include "server/logging.h"
#include "server/request_trace.h"
#include "server/quote.h"
#include "server/request_builder.h"

namespace slim::server {

HttpGeneration::HttpGeneration(const ServiceContext& ctx, std::string peer)
    : ctx_(ctx), peer_(std::move(peer)) {}

HttpGeneration::~HttpGeneration() {
  if (trace_.submitted) {
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
  trace_.prompt_tokens = static_cast<int32_t>(gen.prompt.size());
  gen.deadline = deadline;
  task_ = std::make_shared<GenerationTask>(std::move(gen), this);
  if (!ctx_.registry->Add(request_id_, task_)) {
    const std::string id = request_id_;
    request_id_ += " (duplicate)";
    return Status(StatusCode::kAlreadyExists,
                  "request_id: " + QuoteClientValue(id) + " is already in use by a live request");
  }
  registered_ = true;
  trace_.submitted = true;  // before Submit: the scheduler may call back at once
  Status s = ctx_.scheduler->Submit(task_);
  if (!s.ok()) {
    trace_.submitted = false;
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
      trace_.queue_ms = e.started.queue_ms;
      trace_.prefill_ms = e.started.prefill_ms;
      trace_.prefill_chunks = e.started.prefill_chunks;
      trace_.kept = KeptString(e.started.pruning);
      break;
    case Event::Kind::kToken:
      if (e.token.token >= 0) trace_.Delivered(1, now, ctx_.metrics);
      break;
    case Event::Kind::kFinished:
      trace_.completion_tokens = e.finished.completion_tokens;
      trace_.finish_reason = FinishReasonName(e.finished.reason);
      trace_.preemptions = e.finished.preemptions;
      trace_.decode_ms = e.finished.decode_ms;
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
  trace_.Close(ctx_.metrics, request_id_, peer_, seen);
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
