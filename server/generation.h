// One generation request as the scheduler sees it: the validated request (engine types, no
// protobuf), the events it produces, the sink that receives them, and the task object shared
// by the RPC layer and the scheduler (cancellation flag, deadline).
// Thread-safety: GenerationTask::Cancel may be called from any thread; everything else in a
// task is written before Scheduler::Submit and read-only afterwards (except what the scheduler
// thread owns). GenerationSink methods are called on the scheduler thread only.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/status.h"
#include "engine/pruning/schedule.h"
#include "engine/sampler/sampler.h"
#include "engine/sampler/stop_checker.h"
#include "server/clock.h"

namespace slim::server {

struct GenerationRequest {
  std::string request_id;
  std::vector<int32_t> prompt;        // token ids, validated against the vocabulary
  SamplingParams sampling;            // validated
  StopParams stop;                    // validated; max_tokens resolved (never 0)
  PruningRequest pruning;             // mode resolved (never "server default")
  bool want_logprobs = false;         // report the sampled token's logprob (+ sampling.logprobs top)
  Clock::TimePoint deadline = Clock::TimePoint::max();
};

struct StartedEvent {
  int32_t prompt_tokens = 0;
  PruningSummary pruning;
  double queue_ms = 0.0;
  double prefill_ms = 0.0;      // first prefill step's start to the first token
  int32_t prefill_chunks = 1;   // steps the prefill took (1: unchunked)
};

// One generated token (token >= 0) and the text it made final, or (token < 0) only text
// released at the end of the stream.
struct TokenEvent {
  int32_t token = -1;
  std::string text;
  const SampleResult* sample = nullptr;  // logprobs; set when the request asked for them
};

struct FinishedEvent {
  FinishReason reason = FinishReason::kNone;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  double queue_ms = 0.0;
  double prefill_ms = 0.0;
  double decode_ms = 0.0;               // first token to last token
  PruningSummary pruning;
  int32_t preemptions = 0;              // times swapped out to the host tier and back
  size_t kv_gpu_bytes = 0;              // gpu-tier KV after the last token (ModelRunner::GpuKvBytes)
  size_t kv_gpu_peak_bytes = 0;         // the most after any token
};

// Receives a task's events. For an accepted task: OnStarted once (after its prefill), then
// OnToken per token, then exactly one of OnFinished / OnError. A task ended before its prefill
// gets only OnError.
class GenerationSink {
 public:
  virtual ~GenerationSink() = default;
  virtual void OnStarted(const StartedEvent& e) = 0;
  virtual void OnToken(const TokenEvent& e) = 0;
  virtual void OnFinished(const FinishedEvent& e) = 0;
  virtual void OnError(const Status& status) = 0;
};

class GenerationTask {
 public:
  GenerationTask(GenerationRequest request, GenerationSink* sink) : request_(std::move(request)), sink_(sink) {}

  const GenerationRequest& request() const { return request_; }
  GenerationSink* sink() const { return sink_; }

  // Asks the scheduler to end the task with `status` (CANCELLED, ABORTED, DEADLINE_EXCEEDED,
  // UNAVAILABLE) at its next step; the first call wins. Returns whether this call won.
  bool Cancel(Status status);
  // The status Cancel set (OK when none).
  Status cancel_status() const;
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

 private:
  GenerationRequest request_;
  GenerationSink* sink_;
  std::atomic<bool> claimed_{false};
  std::atomic<bool> cancelled_{false};
  Status cancel_status_;  // written once by the winning Cancel before cancelled_ is set
};

inline bool GenerationTask::Cancel(Status status) {
  if (claimed_.exchange(true)) return false;
  cancel_status_ = std::move(status);
  cancelled_.store(true, std::memory_order_release);
  return true;
}

inline Status GenerationTask::cancel_status() const {
  return cancelled() ? cancel_status_ : OkStatus();
}

}  // namespace slim::server
