// Continuous batching scheduler: queue, admission by worst-case KV blocks, one engine step per
// iteration (decodes plus budgeted, chunked prefills), per-sequence sampling and text
// (SequenceOutput, as in Engine::Generate, so a stream's text equals the engine's own output).
#include "server/scheduler.h"

#include <algorithm>
#include <optional>
#include <string>

namespace slim::server {

struct Scheduler::Running {
  std::shared_ptr<GenerationTask> task;
  kv::SeqId seq = 0;
  int64_t blocks = 0;                   // committed worst case
  Sampler sampler;
  SequenceOutput output;                // text, stop conditions
  std::vector<int32_t> history;         // prompt + generated
  int32_t last_token = -1;              // sampled, not yet appended to the KV cache
  int32_t generated = 0;
  double queue_ms = 0.0;
  double prefill_ms = 0.0;
  PruningSummary pruning;
  Clock::TimePoint first_token;
  bool ended = false;
  uint64_t order = 0;                   // arrival order
  int32_t generated_at_admit = 0;       // `generated` when last (re)admitted
  bool prefilling = true;               // its prompt is not fully prefilled yet
  bool prefill_started = false;         // some step ran part of it
  Clock::TimePoint arrival, prefill_start;
  int32_t prefill_chunks = 0;           // steps its prefill took part in
  int64_t prefill_work = 0;             // budget its prefill used so far
  int32_t preemptions = 0;              // times swapped out
  size_t kv_gpu_peak_bytes = 0;         // gpu-tier KV, the most after any token

  Running(std::shared_ptr<GenerationTask> t, int32_t vocab, const Tokenizer* tok)
      : task(std::move(t)), sampler(task->request().sampling, vocab), output(tok, task->request().stop) {}
};

Scheduler::Scheduler(ModelRunner* runner, SchedulerOptions options, const Clock* clock, SchedulerObserver* observer)
    : runner_(runner), options_(options), clock_(clock), observer_(observer ? observer : &null_observer_) {
  budget_blocks_ = runner_->TotalBlocks();
  options_.max_seqs = std::max(1, options_.max_seqs);
  options_.max_queue = std::max(0, options_.max_queue);
}

Scheduler::~Scheduler() { Shutdown(UnavailableError("server is shutting down")); }

StatusOr<int64_t> Scheduler::WorstCaseBlocks(const GenerationRequest& r) const {
  SLIM_ASSIGN_OR_RETURN(int64_t prefill,
                        runner_->PrefillBlocks(static_cast<int64_t>(r.prompt.size()), r.pruning));
  const int64_t bt = runner_->block_tokens();
  const int64_t growth = (static_cast<int64_t>(r.stop.max_tokens) + bt - 1) / bt;
  return prefill + growth * runner_->n_layers();
}

Status Scheduler::Submit(std::shared_ptr<GenerationTask> task) {
  SLIM_ASSIGN_OR_RETURN(int64_t blocks, WorstCaseBlocks(task->request()));
  if (blocks > budget_blocks_) {
    return ResourceExhaustedError("request needs up to " + std::to_string(blocks) +
                                  " KV blocks (prompt " + std::to_string(task->request().prompt.size()) +
                                  " tokens + max_tokens " + std::to_string(task->request().stop.max_tokens) +
                                  "), the KV store holds " + std::to_string(budget_blocks_));
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return UnavailableError("server is shutting down");
    // Cancelled entries still in waiting_ (reaped at the next step, which may be a whole long
    // prefill away) hold no slot.
    int64_t queued_blocks = 0;
    const int64_t queued = LiveWaitingLocked(&queued_blocks);
    if (options_.max_queue == 0) {
      // No waiting at all: accepted only when it can start at once, i.e. nothing is ahead of it
      // but requests that can start at once too, a sequence slot is free and its worst case fits
      // the uncommitted blocks. An idle server always accepts (a request that could never fit
      // was refused above).
      if (swapped_count_ > 0 || running_count_ + queued >= options_.max_seqs ||
          committed_blocks_ + queued_blocks + blocks > budget_blocks_) {
        return ResourceExhaustedError("request cannot start at once and --max-queue 0 allows no waiting (" +
                                      std::to_string(running_count_) + " running, " + std::to_string(swapped_count_) +
                                      " swapped, " + std::to_string(committed_blocks_ + queued_blocks) + " of " +
                                      std::to_string(budget_blocks_) + " KV blocks promised)");
      }
    } else if (queued >= options_.max_queue) {
      return ResourceExhaustedError("request queue is full (" + std::to_string(queued) + " waiting, " +
                                    std::to_string(running_count_) + " running)");
    }
    waiting_.push_back(Waiting{std::move(task), clock_->Now(), blocks, next_order_++});
  }
  cv_.notify_one();
  return OkStatus();
}

void Scheduler::Notify() {
  {
    std::lock_guard<std::mutex> l(mu_);
    wake_ = true;
  }
  cv_.notify_one();
}

void Scheduler::Start() {
  std::lock_guard<std::mutex> l(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Loop(); });
}

void Scheduler::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      if (stopping_) return;
      if (!wake_ && waiting_.empty() && running_.empty() && swapped_.empty()) {
        cv_.wait(l, [&] { return stopping_ || wake_ || !waiting_.empty(); });
      }
      if (stopping_) return;
      wake_ = false;
    }
    if (!Step()) {
      // Nothing could move (e.g. the queue head waits for blocks that are being decoded into):
      // sleep briefly rather than spin, waking on any submit or cancel.
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_for(l, std::chrono::milliseconds(5), [&] { return stopping_ || wake_; });
    }
  }
}

void Scheduler::Shutdown(const Status& status) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_ && !thread_.joinable() && waiting_.empty() && running_.empty() && swapped_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // The scheduler thread is gone: this thread now owns the runner.
  std::deque<Waiting> waiting;
  {
    std::lock_guard<std::mutex> l(mu_);
    waiting.swap(waiting_);
  }
  for (Waiting& w : waiting) w.task->sink()->OnError(status);
  for (auto& s : running_) EndRunning(*s, status);
  RemoveEnded();
  for (auto& s : swapped_) EndRunning(*s, status);
  swapped_.clear();
  std::lock_guard<std::mutex> l(mu_);
  swapped_count_ = 0;
}

SchedulerStats Scheduler::Stats() const {
  std::lock_guard<std::mutex> l(mu_);
  SchedulerStats s = counters_;
  s.waiting = LiveWaitingLocked(nullptr);
  s.running = running_count_;
  s.committed_blocks = committed_blocks_;
  s.budget_blocks = budget_blocks_;
  s.swapped = swapped_count_;
  return s;
}

int64_t Scheduler::LiveWaitingLocked(int64_t* blocks) const {
  int64_t n = 0, b = 0;
  for (const Waiting& w : waiting_) {
    if (w.task->cancelled()) continue;
    ++n;
    b += w.blocks;
  }
  if (blocks) *blocks = b;
  return n;
}

int64_t Scheduler::live() const {
  std::lock_guard<std::mutex> l(mu_);
  return static_cast<int64_t>(waiting_.size()) + running_count_ + swapped_count_;
}

bool Scheduler::Step() {
  const Clock::TimePoint now = clock_->Now();
  ReapWaiting(now);
  ReapRunning(now);
  bool worked = Admit(now);
  worked = RunStep() || worked;
  return worked;
}

namespace {

// The status a task ends with when it is reaped, or OK to keep it.
Status ReapStatus(const GenerationTask& t, Clock::TimePoint now, int32_t generated) {
  if (t.cancelled()) return t.cancel_status();
  if (now >= t.request().deadline) {
    return DeadlineExceededError(generated == 0 ? "deadline exceeded before the request was served"
                                                : "deadline exceeded after " + std::to_string(generated) +
                                                      " generated tokens");
  }
  return OkStatus();
}

}  // namespace

void Scheduler::ReapWaiting(Clock::TimePoint now) {
  std::vector<std::pair<std::shared_ptr<GenerationTask>, Status>> ended;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      Status st = ReapStatus(*it->task, now, 0);
      if (st.ok()) {
        ++it;
        continue;
      }
      ended.emplace_back(std::move(it->task), std::move(st));
      it = waiting_.erase(it);
    }
  }
  for (auto& [task, st] : ended) task->sink()->OnError(st);
}

void Scheduler::ReapRunning(Clock::TimePoint now) {
  bool any = false;
  for (auto& s : running_) {
    Status st = ReapStatus(*s->task, now, s->generated);
    if (st.ok()) continue;
    EndRunning(*s, st);
    any = true;
  }
  if (any) RemoveEnded();
  // Swapped sequences hold no commitment: they just leave.
  for (auto it = swapped_.begin(); it != swapped_.end();) {
    Status st = ReapStatus(*(*it)->task, now, (*it)->generated);
    if (st.ok()) {
      ++it;
      continue;
    }
    EndRunning(**it, st);
    it = swapped_.erase(it);
    std::lock_guard<std::mutex> l(mu_);
    --swapped_count_;
  }
}

bool Scheduler::Admit(Clock::TimePoint now) {
  bool any = false;
  for (;;) {
    if (options_.max_prefill_tokens_per_step > 0) {
      // Prompts admitted and not yet prefilled already fill a step: the rest stay queued (where
      // a swap-in or a cancellation can still change the order of things). A prompt's work left
      // is taken as its length less the work done (an upper bound: pruning needs less).
      int64_t pending = 0;
      for (const auto& s : running_) {
        if (s->prefilling && !s->ended) {
          pending += static_cast<int64_t>(s->task->request().prompt.size()) - s->prefill_work;
        }
      }
      if (pending >= options_.max_prefill_tokens_per_step) break;
    }
    if (!AdmitOne(now)) break;
    any = true;
  }
  return any;
}

bool Scheduler::AdmitOne(Clock::TimePoint now) {
  // The queue head is the earlier arrival of the oldest swapped sequence and the oldest new
  // request; nothing behind it jumps ahead.
  int64_t need = 0, committed = 0;
  uint64_t order = 0;
  bool is_new = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (static_cast<int64_t>(running_.size()) >= options_.max_seqs) return false;
    if (waiting_.empty() && swapped_.empty()) return false;
    is_new = !waiting_.empty() && (swapped_.empty() || waiting_.front().order < swapped_.front()->order);
    need = is_new ? waiting_.front().blocks : swapped_.front()->blocks;
    order = is_new ? waiting_.front().order : swapped_.front()->order;
    committed = committed_blocks_;
  }
  if (committed + need > budget_blocks_ && !MakeRoom(need, order, is_new)) return false;
  if (!is_new) {
    ResumeSwapped();
    return true;
  }
  Waiting w;
  {
    std::lock_guard<std::mutex> l(mu_);
    w = std::move(waiting_.front());
    waiting_.pop_front();
    committed_blocks_ += w.blocks;
    ++running_count_;
  }
  auto s = std::make_unique<Running>(w.task, runner_->vocab_size(), runner_->tokenizer());
  s->seq = next_seq_++;
  s->blocks = w.blocks;
  s->order = w.order;
  s->arrival = w.arrival;
  running_.push_back(std::move(s));
  return true;
}

bool Scheduler::MakeRoom(int64_t need, uint64_t order, bool candidate_is_new) {
  int64_t host_free = runner_->HostFreeBlocks();
  if (host_free <= 0) return false;
  int64_t committed = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    committed = committed_blocks_;
  }
  // Most recently admitted first; each must have made progress since its (re)admission, and a
  // swapped candidate displaces only later arrivals (so two swapped sequences never trade places).
  std::vector<size_t> victims;
  int64_t freed = 0;
  for (size_t i = running_.size(); i-- > 0 && committed - freed + need > budget_blocks_;) {
    const Running& v = *running_[i];
    if (v.ended || v.generated <= v.generated_at_admit) continue;
    if (!candidate_is_new && v.order < order) continue;
    const int64_t h = runner_->HostBlocksToSwapOut(v.seq);
    if (h > host_free) continue;
    host_free -= h;
    freed += v.blocks;
    victims.push_back(i);
  }
  if (committed - freed + need > budget_blocks_) return false;
  int64_t released = 0, swapped = 0;
  for (size_t i : victims) {  // descending indices: erasing keeps the rest valid
    std::unique_ptr<Running>& v = running_[i];
    if (!runner_->SwapOut(v->seq).ok()) continue;  // stays running; the room check below decides
    released += v->blocks;
    ++swapped;
    ++v->preemptions;
    auto at = std::find_if(swapped_.begin(), swapped_.end(), [&](const auto& s) { return s->order > v->order; });
    swapped_.insert(at, std::move(v));
    running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
  }
  std::lock_guard<std::mutex> l(mu_);
  committed_blocks_ -= released;
  running_count_ -= swapped;
  swapped_count_ += swapped;
  counters_.preemptions += swapped;
  return committed_blocks_ + need <= budget_blocks_;
}

void Scheduler::ResumeSwapped() {
  std::unique_ptr<Running> s = std::move(swapped_.front());
  swapped_.pop_front();
  const Status st = runner_->SwapIn(s->seq);
  {
    std::lock_guard<std::mutex> l(mu_);
    --swapped_count_;
    if (st.ok()) {
      committed_blocks_ += s->blocks;
      ++running_count_;
    }
  }
  if (!st.ok()) {
    EndRunning(*s, st.WithPrefix("swap-in"));
    return;
  }
  s->generated_at_admit = s->generated;
  running_.push_back(std::move(s));
}

bool Scheduler::RunStep() {
  if (running_.empty()) return false;
  std::vector<StepItem> items(running_.size());
  for (size_t i = 0; i < running_.size(); ++i) {
    Running& s = *running_[i];
    const GenerationRequest& req = s.task->request();
    StepItem& it = items[i];
    it.seq = s.seq;
    if (s.prefilling) {
      // The first token is sampled with the prefill's last chunk (history = the prompt).
      it.kind = StepItem::Kind::kPrefill;
      it.tokens = req.prompt;
      it.pruning = &req.pruning;
      it.sample = SampleSpec{&s.sampler, req.prompt};
    } else {
      it.tokens = std::span<const int32_t>(&s.last_token, 1);
      it.sample = SampleSpec{&s.sampler, s.history};
    }
  }
  const Clock::TimePoint t0 = clock_->Now();
  const Status st = runner_->Step(items, options_.max_prefill_tokens_per_step, &step_out_);
  if (!st.ok()) {
    for (auto& s : running_) EndRunning(*s, st.WithPrefix("step"));
    RemoveEnded();
    return true;
  }
  const double seconds = MsBetween(t0, clock_->Now()) / 1e3;
  int decoded = 0;
  int64_t tokens = 0, chunks = 0, prefills = 0;
  bool any_ended = false;
  Status decode_failure;
  for (size_t i = 0; i < items.size(); ++i) {
    Running& s = *running_[i];
    StepOutput& out = step_out_[i];
    if (items[i].kind == StepItem::Kind::kDecode) {
      if (!out.status.ok()) {
        decode_failure = out.status;
        continue;
      }
      ++decoded;
      ++tokens;
      any_ended = HandleToken(s, out.sampled) || any_ended;
      continue;
    }
    if (out.status.ok() && (out.work > 0 || out.done)) ++chunks;
    if (out.status.ok() && out.done) {
      ++prefills;
      ++tokens;
    }
    any_ended = HandlePrefill(s, out, t0) || any_ended;
  }
  if (!decode_failure.ok()) {
    // Every decode of the step failed alike. Out of KV blocks cannot happen while worst-case
    // commitments hold; end the youngest decoding sequence so the others can go on rather than stall.
    for (size_t i = items.size(); i-- > 0;) {
      if (items[i].kind != StepItem::Kind::kDecode || running_[i]->ended) continue;
      EndRunning(*running_[i], decode_failure.WithPrefix("decode"));
      if (decode_failure.code() == StatusCode::kResourceExhausted) break;
    }
    any_ended = true;
  }
  if (decoded > 0) observer_->OnDecodeStep(decoded, seconds);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (decoded > 0) {
      ++counters_.decode_steps;
      counters_.decode_tokens += decoded;
      counters_.max_decode_batch = std::max<int64_t>(counters_.max_decode_batch, decoded);
    }
    counters_.prefill_chunks += chunks;
    counters_.prefills += prefills;
  }
  if (tokens > 0) observer_->OnGeneratedTokens(tokens);
  if (any_ended) RemoveEnded();
  return true;
}

bool Scheduler::HandlePrefill(Running& s, StepOutput& out, Clock::TimePoint step_start) {
  if (!out.status.ok()) {
    EndRunning(s, out.status.WithPrefix("prefill"));
    return true;
  }
  if (out.work == 0 && !out.done) return false;  // the step's budget did not reach it
  if (!s.prefill_started) {
    s.prefill_started = true;
    s.prefill_start = step_start;
    s.queue_ms = MsBetween(s.arrival, step_start);
    observer_->OnAdmitted(s.queue_ms / 1e3);
  }
  ++s.prefill_chunks;
  s.prefill_work += out.work;
  observer_->OnPrefillChunk(out.work);
  if (!out.done) return false;
  s.prefilling = false;
  s.prefill_ms = MsBetween(s.prefill_start, clock_->Now());
  s.pruning = out.prefill.pruning;
  int64_t pruned = 0;
  if (s.pruning.applied && !s.pruning.stages.empty()) {
    pruned = s.pruning.prompt_tokens - s.pruning.stages.back().tokens_kept;
  }
  observer_->OnPrefill(s.prefill_ms / 1e3, out.prefill.prompt_tokens, pruned);
  const GenerationRequest& req = s.task->request();
  s.history.assign(req.prompt.begin(), req.prompt.end());
  StartedEvent started{out.prefill.prompt_tokens, s.pruning, s.queue_ms, s.prefill_ms, s.prefill_chunks};
  s.task->sink()->OnStarted(started);
  return HandleToken(s, out.sampled);
}

bool Scheduler::HandleToken(Running& s, const SampleResult& sr) {
  if (s.generated == 0) s.first_token = clock_->Now();
  ++s.generated;
  s.history.push_back(sr.token);
  s.last_token = sr.token;
  const size_t gpu_bytes = runner_->GpuKvBytes(s.seq);
  s.kv_gpu_peak_bytes = std::max(s.kv_gpu_peak_bytes, gpu_bytes);
  SequenceOutput::Token t = s.output.Push(sr.token);
  const bool want = s.task->request().want_logprobs;
  s.task->sink()->OnToken(TokenEvent{sr.token, std::move(t.text), want ? &sr : nullptr});
  if (t.finish == FinishReason::kNone) return false;
  if (!t.rest.empty()) s.task->sink()->OnToken(TokenEvent{-1, std::move(t.rest), nullptr});
  FinishedEvent fin;
  fin.reason = t.finish;
  fin.prompt_tokens = static_cast<int32_t>(s.task->request().prompt.size());
  fin.completion_tokens = s.generated;
  fin.queue_ms = s.queue_ms;
  fin.prefill_ms = s.prefill_ms;
  fin.decode_ms = MsBetween(s.first_token, clock_->Now());
  fin.pruning = s.pruning;
  fin.preemptions = s.preemptions;
  fin.kv_gpu_bytes = gpu_bytes;
  fin.kv_gpu_peak_bytes = s.kv_gpu_peak_bytes;
  s.ended = true;
  (void)runner_->Release(s.seq);
  s.task->sink()->OnFinished(fin);
  return true;
}

void Scheduler::EndRunning(Running& s, const Status& status) {
  if (s.ended) return;
  s.ended = true;
  (void)runner_->Release(s.seq);
  s.task->sink()->OnError(status);
}

void Scheduler::RemoveEnded() {
  int64_t freed_blocks = 0, removed = 0;
  for (auto& s : running_) {
    if (!s->ended) continue;
    freed_blocks += s->blocks;
    ++removed;
  }
  if (removed == 0) return;
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& s) { return s->ended; }),
                 running_.end());
  std::lock_guard<std::mutex> l(mu_);
  committed_blocks_ -= freed_blocks;
  running_count_ -= removed;
}

}  // namespace slim::server
