// One generation requested over HTTP: the GenerationSink the scheduler feeds, an event queue the
// HTTP handler's thread drains, and the same accounting as the gRPC reactor (TTFT when the first
// token is taken for the client, inter-token latency, E2E, the outcome counter, one log line).
// The handler's thread waits for events here and cancels the task at once when its client
// disconnects, so the scheduler frees the sequence's KV at its next step.
// Thread-safety: the GenerationSink methods run on the scheduler thread; every other method on
// the handler's thread. The object must outlive the task's terminal event: the destructor
// cancels a task still running and waits for it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "server/generation.h"
#include "server/request_trace.h"
#include "server/inference_service.h"
#include "sliminfer/v1/inference.pb.h"

namespace slim::server {

class HttpGeneration final : public GenerationSink {
 public:
  struct Token {
    int32_t token = -1;       // -1: only text released at the end
    std::string text;
    bool has_logprob = false;
    float logprob = 0.0f;
    std::vector<TokenLogprob> top;
  };
  struct Event {
    enum class Kind { kStarted, kToken, kFinished, kError } kind = Kind::kError;
    StartedEvent started;
    Token token;
    FinishedEvent finished;
    Status status;
  };

  HttpGeneration(const ServiceContext& ctx, std::string peer);
  ~HttpGeneration() override;
  HttpGeneration(const HttpGeneration&) = delete;
  HttpGeneration& operator=(const HttpGeneration&) = delete;

  // Validates `request` with the shared builder, registers it and submits it; `deadline` (or
  // max) bounds it. A non-OK result is the refusal (the call is then over: see Finish).
  Status Submit(const sliminfer::v1::GenerateRequest& request, Clock::TimePoint deadline);
  const std::string& request_id() const { return request_id_; }

  // The next event. While none is queued it checks `connected` every 100 ms and, once that
  // is false, cancels the task ("client went away") and keeps waiting for its terminal event.
  Event Next(const std::function<bool()>& connected);

  // Ends the task with `status` at the scheduler's next step (first cancel wins).
  void Cancel(const Status& status);

  // Accounts for the call once: `seen` is the outcome the client saw (OK only when the whole
  // response reached it). Later calls, and the destructor after one, do nothing.
  void Finish(const Status& seen);

  // GenerationSink (scheduler thread).
  void OnStarted(const StartedEvent& e) override;
  void OnToken(const TokenEvent& e) override;
  void OnFinished(const FinishedEvent& e) override;
  void OnError(const Status& status) override;

 private:
  void Push(Event e);
  void Terminal();  // leaves the registry

  const ServiceContext ctx_;
  const std::string peer_;
  std::shared_ptr<GenerationTask> task_;
  std::string request_id_;
  bool registered_ = false;
  bool finished_ = false;         // Finish ran

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;      // guarded by mu_
  bool ended_ = false;            // guarded by mu_: the terminal event arrived

  // Handler thread only: what the metrics and the log line need.
  RequestTrace trace_;
  bool terminal_taken_ = false;
};

}  // namespace slim::server
