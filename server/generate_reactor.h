// One Generate stream: parses and validates the request, submits it to the scheduler, and
// writes its events (Started, TokenChunks, Finished) one at a time, merging token chunks that
// pile up behind a slow reader into messages of at most ServiceContext::max_chunk_bytes. A write
// still in flight after ServiceContext::stream_write_timeout (the client reads nothing) cancels
// the call, through the service's WriteWatchdog. It stamps TTFT when the first token is handed to the stream,
// observes the request metrics, logs one line per request and ends the call exactly once.
//
// Thread-safety: the GenerationSink methods run on the scheduler thread, the reactions
// (OnWriteDone, OnCancel, OnDone) on gRPC threads; mu_ guards the write state, and gRPC is
// called outside it. Finish is always the last thing a method does with `this`, since OnDone
// (which deletes it) may follow at once.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/grpcpp.h>

#include "server/generation.h"
#include "server/request_trace.h"
#include "server/inference_service.h"
#include "server/write_watchdog.h"

namespace slim::server {

class GenerateReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                              public GenerationSink,
                              public WriteWatchdog::Stream {
 public:
  // `admissible`: OK, or the status to end the call with at once (not ready, draining).
  GenerateReactor(const ServiceContext& ctx, grpc::CallbackServerContext* call, const grpc::ByteBuffer* request,
                  const Status& admissible);

  // GenerationSink (scheduler thread).
  void OnStarted(const StartedEvent& e) override;
  void OnToken(const TokenEvent& e) override;
  void OnFinished(const FinishedEvent& e) override;
  void OnError(const Status& status) override;

  // Reactions (gRPC threads).
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  // WriteWatchdog::Stream (watchdog thread).
  void OnWriteTimeout() override;

 private:

  Status Begin(const grpc::ByteBuffer* request);
  // Queues `response` (or merges a chunk into the last queued one) and writes if idle.
  void Push(sliminfer::v1::GenerateResponse response);
  // The terminal event: `status` once everything queued is written.
  void End(const Status& status);
  enum class Next { kNothing, kWrite, kFinish };
  // Under mu_: prepares the next write (wire_), or decides to finish with final_.
  Next NextLocked();
  // After unlocking: StartWrite(&wire_) or FinishCall().
  void Perform(Next next);
  // Accounting, logging and Finish (the last use of `this`).
  void FinishCall();
  Status WriteTimeoutError() const;

  const ServiceContext ctx_;
  grpc::CallbackServerContext* call_;
  std::shared_ptr<GenerationTask> task_;
  std::string request_id_;
  bool registered_ = false;

  std::mutex mu_;
  std::deque<sliminfer::v1::GenerateResponse> pending_;  // front() is in flight while writing_
  size_t back_chunk_bytes_ = 0;                            // serialized size of pending_.back()'s chunk
  std::chrono::steady_clock::time_point write_deadline_;   // of the write in flight
  bool write_timed_out_ = false;                           // the watchdog cancelled the call
  grpc::ByteBuffer wire_;                                  // bytes of the write in flight
  bool writing_ = false;
  bool ended_ = false;        // the terminal event arrived
  bool finished_ = false;     // Finish was (or is about to be) called
  bool broken_ = false;       // a write failed: the client is gone
  bool writing_finished_ = false;  // the write in flight is the Finished event
  bool finished_written_ = false;  // Finished was written: the outcome the client saw is OK
  Status final_;
  // Timings and counts for the Finished event, the metrics and the log line.
  RequestTrace trace_;
};

}  // namespace slim::server
