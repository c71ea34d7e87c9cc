// Continuous batching over one engine: a FCFS queue admitted while KV blocks allow, then one
// engine step per iteration over every running sequence: a decode for each one that has its
// first token, and the prompts still being prefilled, in admission order, while the step's
// prefill token budget lasts (the first that does not fit runs a chunk; those after it wait).
// Sampling, stop conditions and detokenization are per sequence. Cancellation (any reason) and
// deadlines remove a sequence at the next step and free its KV blocks.
//
// Fairness: prefills are FCFS. A long prompt takes the budget step by step until it is done,
// so a later short prompt waits for it (never the reverse); running streams decode in every
// step, so their inter-token gap is bounded by one step: the decode batch plus at most the
// budget's prefill work.
//
// Admission is by worst-case KV blocks: a sequence is promised the blocks of its prompt (after
// pruning) plus max_tokens more per layer, so a running decode never runs out of blocks; a
// request whose worst case exceeds the whole gpu tier is refused at Submit. Requests are
// admitted while the prompts already waiting for prefill fill less than one step's budget.
//
// Swap instead of waiting (when the runner has a host tier): a queued request that does not fit
// swaps out the most recently admitted running sequences that have made progress since they
// were (re)admitted, and that it may displace: any of them when it is new (so its first token is
// not held behind whole generations), only later arrivals when it is itself swapped. Swapped
// sequences keep their arrival order (FCFS) among the queued ones and resume by prefetch,
// without recomputation, with exactly the tokens they would have produced.
//
// Thread-safety: Submit, Notify, Stats, live and Shutdown may be called from any thread. Step is
// called by the scheduler's own thread after Start (or by a test, when never started). The
// scheduler thread is the only one that touches the ModelRunner.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "server/clock.h"
#include "server/generation.h"
#include "server/model_runner.h"

namespace slim::server {

struct SchedulerOptions {
  int max_seqs = 16;    // sequences prefilled and decoding at once, >= 1
  // Requests waiting for admission (cancelled ones not counted), >= 0. 0 = no waiting: a request
  // is accepted only when it can start at once (a free slot and blocks for its worst case).
  int max_queue = 64;
  // Prompt tokens prefilled per step at most (Engine::Step's budget), > 0; 0 = no limit (every
  // admitted prompt runs whole in its first step).
  int64_t max_prefill_tokens_per_step = 0;
};

struct SchedulerStats {
  int64_t waiting = 0;            // queued, not cancelled
  int64_t running = 0;
  int64_t committed_blocks = 0;   // worst-case KV blocks promised to running sequences
  int64_t budget_blocks = 0;      // KV blocks the scheduler may promise in all
  int64_t prefills = 0;            // completed
  int64_t prefill_chunks = 0;      // steps in which some prefill ran (a whole prompt counts one)
  int64_t decode_steps = 0;
  int64_t decode_tokens = 0;      // sum of decode batch sizes
  int64_t max_decode_batch = 0;
  int64_t swapped = 0;            // sequences swapped out, waiting to resume
  int64_t preemptions = 0;        // swap-outs since start
};

// Hooks for metrics; called on the scheduler thread. Plain numbers, no Prometheus types.
class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  virtual void OnAdmitted(double queue_seconds) {}
  virtual void OnPrefill(double seconds, int64_t prompt_tokens, int64_t pruned_tokens) {}
  virtual void OnPrefillChunk(int64_t work_tokens) {}  // one step's share of one prefill
  virtual void OnDecodeStep(int batch, double seconds) {}
  virtual void OnGeneratedTokens(int64_t n) {}
};

class Scheduler {
 public:
  Scheduler(ModelRunner* runner, SchedulerOptions options, const Clock* clock,
            SchedulerObserver* observer = nullptr);
  ~Scheduler();  // Shutdown(UNAVAILABLE) when still running
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Enqueues `task` (OK: its sink will get events), or refuses it at once with no sink call:
  // UNAVAILABLE after Shutdown, RESOURCE_EXHAUSTED when the queue is full (with max_queue 0:
  // when it cannot start at once) or the request could never fit the KV store,
  // INVALID_ARGUMENT for a pruning schedule the model rejects. Queued tasks already cancelled
  // hold no queue slot.
  Status Submit(std::shared_ptr<GenerationTask> task);
  // Wakes the scheduler thread (call after GenerationTask::Cancel).
  void Notify();
  // Starts the scheduler thread.
  void Start();
  // Refuses new tasks, stops the thread, ends every live task with `status` and frees its KV.
  void Shutdown(const Status& status);

  // One iteration: reap cancelled/expired tasks, admit, one engine step over the running
  // sequences. Returns whether it did any work.
  bool Step();

  SchedulerStats Stats() const;
  int64_t live() const;  // waiting + running

  // Worst-case KV blocks of `request` (prompt after pruning + max_tokens per layer).
  StatusOr<int64_t> WorstCaseBlocks(const GenerationRequest& request) const;

 private:
  struct Waiting {
    std::shared_ptr<GenerationTask> task;
    Clock::TimePoint arrival;
    int64_t blocks = 0;
    uint64_t order = 0;  // arrival order
  };
  struct Running;

  void Loop();
  // Under mu_: waiting entries not cancelled, and (when `blocks`) the sum of their worst cases.
  int64_t LiveWaitingLocked(int64_t* blocks) const;
  void ReapWaiting(Clock::TimePoint now);
  void ReapRunning(Clock::TimePoint now);
  // Admits queue heads while a slot, their blocks and the step's budget allow.
  bool Admit(Clock::TimePoint now);
  bool AdmitOne(Clock::TimePoint now);
  // The engine step over running_: decodes and prefills.
  bool RunStep();
  // A prefill step's result for `s` (its own failure, a chunk, or its end and first token);
  // returns true when s ended.
  bool HandlePrefill(Running& s, StepOutput& out, Clock::TimePoint step_start);
  // Swaps out victims so that `need` more blocks fit, if eligible ones can make room.
  bool MakeRoom(int64_t need, uint64_t order, bool candidate_is_new);
  void ResumeSwapped();
  // Feeds one sampled token to `s`; returns true when the sequence finished (and was ended).
  bool HandleToken(Running& s, const SampleResult& sr);
  void EndRunning(Running& s, const Status& status);  // releases KV; OnFinished when OK
  void RemoveEnded();

  ModelRunner* runner_;
  SchedulerOptions options_;
  const Clock* clock_;
  SchedulerObserver* observer_;
  SchedulerObserver null_observer_;
  int64_t budget_blocks_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Waiting> waiting_;            // guarded by mu_
  bool stopping_ = false;                  // guarded by mu_
  bool wake_ = false;                      // guarded by mu_
  int64_t running_count_ = 0;              // guarded by mu_ (mirror of running_.size())
  int64_t committed_blocks_ = 0;           // guarded by mu_
  int64_t swapped_count_ = 0;              // guarded by mu_ (mirror of swapped_.size())
  uint64_t next_order_ = 0;                // guarded by mu_
  SchedulerStats counters_;                // guarded by mu_ (prefills, decode_*)

  // Scheduler thread only.
  std::vector<std::unique_ptr<Running>> running_;   // in (re)admission order
  std::deque<std::unique_ptr<Running>> swapped_;    // in arrival order
  kv::SeqId next_seq_ = 1;
  std::vector<StepOutput> step_out_;  // of the last step
  std::thread thread_;
};

}  // namespace slim::server
