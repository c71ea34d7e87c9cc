// The Generate stream reactor.
#include "server/generate_reactor.h"

#include <absl/strings/str_format.h>

#include "server/logging.h"
#include "server/request_trace.h"
#include "server/proto_parse.h"
#include "server/quote.h"

namespace slim::server {
namespace {

namespace v1 = sliminfer::v1;

void ToProto(const PruningSummary& s, v1::PruningSummary* out) {
  out->set_applied(s.applied);
  out->set_prompt_tokens(s.prompt_tokens);
  for (const auto& st : s.stages) {
    v1::PruningStageSummary* p = out->add_stages();
    p->set_layer(st.layer);
    p->set_tokens_kept(st.tokens_kept);
  }
  out->set_kv_bytes(static_cast<int64_t>(s.kv_bytes));
  out->set_dense_kv_bytes(static_cast<int64_t>(s.dense_kv_bytes));
}

v1::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStopToken: return v1::FINISH_REASON_STOP_TOKEN;
    case FinishReason::kStopString: return v1::FINISH_REASON_STOP_STRING;
    case FinishReason::kEndOfGeneration: return v1::FINISH_REASON_END_OF_GENERATION;
    default: return v1::FINISH_REASON_UNSPECIFIED;
  }
}

// Whether a cancelled call was ended by its deadline. The client's own deadline timer usually
// fires a moment before the server's and its cancel arrives first, so a cancel this close to
// the deadline counts as the deadline.
bool DeadlineReached(const grpc::CallbackServerContext* call) {
  constexpr auto kSlack = std::chrono::milliseconds(250);
  const auto deadline = call->deadline();
  return deadline != std::chrono::system_clock::time_point::max() &&
         std::chrono::system_clock::now() + kSlack >= deadline;
}

}  // namespace

GenerateReactor::GenerateReactor(const ServiceContext& ctx, grpc::CallbackServerContext* call,
                                 const grpc::ByteBuffer* request, const Status& admissible)
    : ctx_(ctx), call_(call) {
  Status s = admissible.ok() ? Begin(request) : admissible;
  if (!s.ok()) {
    {
      std::lock_guard<std::mutex> l(mu_);
      ended_ = true;
      finished_ = true;
      final_ = s;
    }
    FinishCall();
  }
}

Status GenerateReactor::Begin(const grpc::ByteBuffer* request) {
  v1::GenerateRequest req;
  SLIM_RETURN_IF_ERROR(ParseRequest(*request, &req));
  request_id_ = req.request_id();  // for the log line even when validation fails
  SLIM_ASSIGN_OR_RETURN(GenerationRequest gen, BuildGenerationRequest(req, *ctx_.engine, ctx_.limits));
  if (gen.request_id.empty()) gen.request_id = ctx_.registry->NewId();
  request_id_ = gen.request_id;
  trace_.prompt_tokens = static_cast<int32_t>(gen.prompt.size());
  const auto deadline = call_->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    const auto left = deadline - std::chrono::system_clock::now();
    gen.deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(left);
  }
  task_ = std::make_shared<GenerationTask>(std::move(gen), this);
  if (!ctx_.registry->Add(request_id_, task_)) {
    const std::string id = request_id_;
    request_id_ += " (duplicate)";
    return Status(StatusCode::kAlreadyExists, "request_id: " + QuoteClientValue(id) + " is already in use by a live request");
  }
  registered_ = true;
  trace_.submitted = true;  // before Submit: the scheduler may call back at once
  Status s = ctx_.scheduler->Submit(task_);
  if (!s.ok()) trace_.submitted = false;
  return s;
}

void GenerateReactor::OnStarted(const StartedEvent& e) {
  v1::GenerateResponse r;
  v1::Started* s = r.mutable_started();
  s->set_request_id(request_id_);
  s->set_prompt_tokens(e.prompt_tokens);
  ToProto(e.pruning, s->mutable_pruning());
  s->set_queue_ms(e.queue_ms);
  s->set_prefill_ms(e.prefill_ms);
  s->set_prefill_chunks(e.prefill_chunks);
  {
    std::lock_guard<std::mutex> l(mu_);
    trace_.queue_ms = e.queue_ms;
    trace_.prefill_ms = e.prefill_ms;
    trace_.prefill_chunks = e.prefill_chunks;
    trace_.kept = KeptString(e.pruning);
  }
  Push(std::move(r));
}

void GenerateReactor::OnToken(const TokenEvent& e) {
  v1::GenerateResponse r;
  v1::TokenChunk* c = r.mutable_chunk();
  c->set_text(e.text);
  if (e.token >= 0) c->add_token_ids(e.token);
  if (e.sample != nullptr) {
    v1::TokenLogprob* lp = c->add_logprobs();
    lp->set_token_id(e.token);
    lp->set_logprob(e.sample->logprob);
    for (const TokenLogprob& t : e.sample->top) {
      v1::TopLogprob* tp = lp->add_top();
      tp->set_token_id(t.id);
      tp->set_logprob(t.logprob);
    }
  }
  Push(std::move(r));
}

void GenerateReactor::OnFinished(const FinishedEvent& e) {
  v1::GenerateResponse r;
  v1::Finished* f = r.mutable_finished();
  f->set_reason(ToProto(e.reason));
  f->mutable_usage()->set_prompt_tokens(e.prompt_tokens);
  f->mutable_usage()->set_completion_tokens(e.completion_tokens);
  f->mutable_usage()->set_total_tokens(e.prompt_tokens + e.completion_tokens);
  v1::Timings* t = f->mutable_timings();
  t->set_queue_ms(e.queue_ms);
  t->set_prefill_ms(e.prefill_ms);
  t->set_decode_ms(e.decode_ms);
  t->set_decode_ms_per_token(e.completion_tokens > 1 ? e.decode_ms / (e.completion_tokens - 1) : 0.0);
  // ttft_ms and e2e_ms are stamped when this event is written (NextLocked).
  ToProto(e.pruning, f->mutable_pruning());
  f->set_preemptions(e.preemptions);
  f->set_kv_gpu_bytes(static_cast<int64_t>(e.kv_gpu_bytes));
  f->set_kv_gpu_peak_bytes(static_cast<int64_t>(e.kv_gpu_peak_bytes));
  {
    std::lock_guard<std::mutex> l(mu_);
    trace_.completion_tokens = e.completion_tokens;
    trace_.finish_reason = FinishReasonName(e.reason);
    trace_.preemptions = e.preemptions;
    trace_.decode_ms = e.decode_ms;
  }
  Push(std::move(r));
  End(OkStatus());
}

void GenerateReactor::OnError(const Status& status) { End(status); }

void GenerateReactor::Push(v1::GenerateResponse response) {
  std::unique_lock<std::mutex> l(mu_);
  if (finished_ || ended_ || broken_) return;
  // Merge a chunk into the last queued chunk that is not in flight.
  // The merged size is tracked (an upper bound: each merge adds the chunk's own framing) rather
  // than recomputed, which would make a long slow stream quadratic.
  const size_t first_free = writing_ ? 1 : 0;
  const size_t bytes = response.has_chunk() ? response.chunk().ByteSizeLong() : 0;
  if (response.has_chunk() && pending_.size() > first_free && pending_.back().has_chunk() &&
      back_chunk_bytes_ + bytes <= ctx_.max_chunk_bytes) {
    v1::TokenChunk* into = pending_.back().mutable_chunk();
    const v1::TokenChunk& from = response.chunk();
    into->mutable_text()->append(from.text());
    into->mutable_token_ids()->MergeFrom(from.token_ids());
    into->mutable_logprobs()->MergeFrom(from.logprobs());
    back_chunk_bytes_ += bytes;
  } else {
    pending_.push_back(std::move(response));
    back_chunk_bytes_ = bytes;
  }
  const Next next = NextLocked();
  l.unlock();
  Perform(next);
}

void GenerateReactor::End(const Status& status) {
  // The request is over: its id is free again and Abort no longer finds it, even while its
  // last messages wait for the client to read them.
  if (registered_) ctx_.registry->Remove(request_id_, task_.get());
  std::unique_lock<std::mutex> l(mu_);
  if (ended_) return;
  ended_ = true;
  final_ = status;
  const Next next = NextLocked();
  l.unlock();
  Perform(next);
}

GenerateReactor::Next GenerateReactor::NextLocked() {
  if (writing_ || finished_) return Next::kNothing;
  if (!pending_.empty() && !broken_) {
    v1::GenerateResponse& next = pending_.front();
    const auto now = std::chrono::steady_clock::now();
    if (next.has_chunk() && next.chunk().token_ids_size() > 0) {
      trace_.Delivered(next.chunk().token_ids_size(), now, ctx_.metrics);
    } else if (next.has_finished()) {
      writing_finished_ = true;
      v1::Timings* t = next.mutable_finished()->mutable_timings();
      t->set_ttft_ms(trace_.delivered > 0 ? MsSince(trace_.arrival, trace_.first_token) : 0.0);
      t->set_e2e_ms(MsSince(trace_.arrival, now));
    }
    wire_ = SerializeToBuffer(next);
    writing_ = true;
    write_deadline_ = now + ctx_.stream_write_timeout;
    if (ctx_.watchdog != nullptr) ctx_.watchdog->Arm(this, write_deadline_);
    return Next::kWrite;
  }
  if (!ended_) return Next::kNothing;
  finished_ = true;
  return Next::kFinish;
}

void GenerateReactor::Perform(Next next) {
  // Outside mu_: wire_ is not touched again until OnWriteDone, and Finish is the last use of
  // `this`.
  if (next == Next::kWrite) StartWrite(&wire_);
  else if (next == Next::kFinish) FinishCall();
}

void GenerateReactor::OnWriteDone(bool ok) {
  std::unique_lock<std::mutex> l(mu_);
  writing_ = false;
  if (!pending_.empty()) pending_.pop_front();
  if (ok && writing_finished_) finished_written_ = true;
  writing_finished_ = false;
  if (!ok) {
    // The client is gone (cancelled, deadline, connection lost): drop what is queued; the
    // scheduler ends the task at its next step and then End() finishes the call.
    broken_ = true;
    pending_.clear();
    if (!ended_ && task_) {
      task_->Cancel(write_timed_out_ ? WriteTimeoutError()
                    : DeadlineReached(call_) ? DeadlineExceededError("deadline exceeded")
                                             : CancelledError("client went away"));
      ctx_.scheduler->Notify();
    }
  }
  const Next next = NextLocked();
  l.unlock();
  Perform(next);
}

void GenerateReactor::OnCancel() {
  // Cancel() is first-wins and the task is only read by the scheduler, so no lock is needed.
  if (!task_ || !trace_.submitted) return;
  task_->Cancel(DeadlineReached(call_) ? DeadlineExceededError("deadline exceeded")
                                       : CancelledError("cancelled by the client"));
  ctx_.scheduler->Notify();
}

void GenerateReactor::FinishCall() {
  // finished_ is set: nothing else touches the write state any more.
  Status status = final_;
  if (write_timed_out_ && !finished_written_) {
    status = WriteTimeoutError();
    ctx_.metrics->CountWriteTimeout();
  } else if (status.ok() && !finished_written_) {
    // The generation finished, but the client went away before Finished reached it: count (and
    // log) what the client saw.
    status = DeadlineReached(call_) ? DeadlineExceededError("deadline exceeded before Finished was delivered")
                                    : CancelledError("the client went away before Finished was delivered");
  }
  trace_.Close(ctx_.metrics, request_id_, call_->peer(), status);
  Finish(ToGrpc(status));
}

void GenerateReactor::OnWriteTimeout() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!writing_ || std::chrono::steady_clock::now() < write_deadline_) return;  // a later write re-armed
    write_timed_out_ = true;
  }
  // The write in flight fails, and OnWriteDone(false) ends the generation and the call. call_
  // is valid here: OnDone (after which gRPC frees it) waits in Disarm until this returns.
  call_->TryCancel();
}

Status GenerateReactor::WriteTimeoutError() const {
  return CancelledError(absl::StrFormat("the client read nothing for %g s (--stream-write-timeout-s)",
                                        ctx_.stream_write_timeout.count() / 1000.0));
}

void GenerateReactor::OnDone() {
  if (ctx_.watchdog != nullptr) ctx_.watchdog->Disarm(this);
  if (registered_) ctx_.registry->Remove(request_id_, task_.get());
  delete this;
}

}  // namespace slim::server
