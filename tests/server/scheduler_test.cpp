// Scheduler policy with a fake model and a fake clock: FCFS admission by worst-case KV blocks
// (no jumping ahead), one prefill per step, every running sequence in each decode step,
// deadlines while queued and while running, cancellation, refusal of what can never fit or
// does not fit the queue, KV blocks back to baseline, shutdown, and timings from the clock.
#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <map>
#include <set>

#include "server/scheduler.h"

namespace slim::server {
namespace {

using namespace std::chrono_literals;

// A model whose next token is always (position * 7 + seq) % vocab (argmax of one-hot logits),
// with block accounting like the real KV store: ceil(tokens / block) blocks per layer.
class FakeRunner final : public ModelRunner {
 public:
  FakeRunner(int64_t total_blocks, int n_layers = 2, int block_tokens = 4, int64_t host_blocks = 0)
      : total_(total_blocks), layers_(n_layers), bt_(block_tokens), host_total_(host_blocks) {}

  int32_t vocab_size() const override { return 50; }
  int n_layers() const override { return layers_; }
  int block_tokens() const override { return bt_; }
  int64_t TotalBlocks() const override { return total_; }
  int64_t FreeBlocks() const override { return total_ - used_; }
  const Tokenizer* tokenizer() const override { return nullptr; }
  StatusOr<int64_t> PrefillBlocks(int64_t n, const PruningRequest&) const override { return Blocks(n) * layers_; }
  // Engine::Step's contract on the fake model: decodes all or nothing on blocks; prefills in
  // order while the budget lasts (a prompt costs its length), chunked, their blocks reserved at
  // their first chunk; completed items sampled from the one-hot logits.
  Status Step(std::span<const StepItem> items, int64_t budget, std::vector<StepOutput>* out) override {
    out->assign(items.size(), StepOutput{});
    int64_t need = 0;
    int decodes = 0;
    Status decode_status;
    for (const StepItem& it : items) {
      if (it.kind != StepItem::Kind::kDecode) continue;
      ++decodes;
      if (swapped.count(it.seq)) return FailedPreconditionError("fake: decode of a swapped-out sequence");
      if (!len_.count(it.seq) || partial_.count(it.seq)) return FailedPreconditionError("fake: decode before prefill");
      need += (Blocks(len_.at(it.seq) + 1) - Blocks(len_.at(it.seq))) * layers_;
    }
    if (need > FreeBlocks()) decode_status = ResourceExhaustedError("fake: decode full");
    else used_ += need;
    if (decodes > 0) batches.push_back(decodes);
    int64_t left = budget > 0 ? budget : std::numeric_limits<int64_t>::max();
    int64_t work = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const StepItem& it = items[i];
      StepOutput& o = (*out)[i];
      if (it.kind == StepItem::Kind::kDecode) {
        o.status = decode_status;
        if (!o.status.ok()) continue;
        ++len_[it.seq];
      } else {
        if (left <= 0) continue;
        const int64_t n = static_cast<int64_t>(it.tokens.size());
        if (!len_.count(it.seq)) {
          if (Blocks(n) * layers_ > FreeBlocks()) {
            o.status = ResourceExhaustedError("fake: full");
            continue;
          }
          used_ += Blocks(n) * layers_;
          len_[it.seq] = n;
          partial_[it.seq] = 0;
        }
        int64_t& done = partial_.at(it.seq);
        const int64_t r = std::min(n - done, left);
        done += r;
        left -= r;
        work += r;
        o.work = r;
        if (done < n) continue;
        partial_.erase(it.seq);
        ++prefills;
        o.prefill.prompt_tokens = static_cast<int32_t>(n);
      }
      o.done = true;
      o.sampled = it.sample.sampler->Sample(Logits(it.seq), it.sample.history);
    }
    step_work.push_back(work);
    return OkStatus();
  }
  Status Release(kv::SeqId seq) override {
    auto it = len_.find(seq);
    if (it == len_.end()) return NotFoundError("fake: no sequence");
    partial_.erase(seq);
    (swapped.count(seq) ? host_used_ : used_) -= Blocks(it->second) * layers_;
    swapped.erase(seq);
    len_.erase(it);
    released.insert(seq);
    return OkStatus();
  }
  // A host tier of host_total_ blocks: swapping moves a sequence's blocks between the counts.
  int64_t HostFreeBlocks() const override { return host_total_ - host_used_; }
  int64_t HostBlocksToSwapOut(kv::SeqId seq) const override { return Blocks(len_.at(seq)) * layers_; }
  Status SwapOut(kv::SeqId seq) override {
    if (swapped.count(seq) || HostBlocksToSwapOut(seq) > HostFreeBlocks()) return ResourceExhaustedError("fake: host");
    used_ -= HostBlocksToSwapOut(seq);
    host_used_ += HostBlocksToSwapOut(seq);
    swapped.insert(seq);
    ++swap_outs;
    return OkStatus();
  }
  Status SwapIn(kv::SeqId seq) override {
    if (!swapped.count(seq)) return FailedPreconditionError("fake: not swapped");
    if (HostBlocksToSwapOut(seq) > FreeBlocks()) return ResourceExhaustedError("fake: gpu");
    used_ += HostBlocksToSwapOut(seq);
    host_used_ -= HostBlocksToSwapOut(seq);
    swapped.erase(seq);
    return OkStatus();
  }
  int64_t host_used() const { return host_used_; }
  std::set<kv::SeqId> swapped;
  int swap_outs = 0;

  int64_t used() const { return used_; }
  int64_t live() const { return static_cast<int64_t>(len_.size()); }
  int prefills = 0;               // completed
  std::vector<int> batches;        // decode items per step that had some
  std::vector<int64_t> step_work;  // prefill tokens run per step
  std::set<kv::SeqId> released;

 private:
  int64_t Blocks(int64_t tokens) const { return (tokens + bt_ - 1) / bt_; }
  std::vector<float> Logits(kv::SeqId seq) const {
    std::vector<float> l(static_cast<size_t>(vocab_size()), 0.0f);
    l[static_cast<size_t>((len_.at(seq) * 7 + seq) % vocab_size())] = 10.0f;
    return l;
  }
  int64_t total_;
  int layers_, bt_;
  int64_t host_total_;
  int64_t used_ = 0, host_used_ = 0;
  std::map<kv::SeqId, int64_t> len_;      // tokens (a prefill's whole prompt from its first chunk)
  std::map<kv::SeqId, int64_t> partial_;  // prompt tokens run of prefills not done
};

// Records what a task received.
struct Recorder final : GenerationSink {
  int started = 0;
  std::vector<int32_t> tokens;
  bool finished = false;
  FinishedEvent fin;
  StartedEvent start;
  Status error;
  int terminal = 0;
  void OnStarted(const StartedEvent& e) override {
    ++started;
    start = e;
  }
  void OnToken(const TokenEvent& e) override {
    if (e.token >= 0) tokens.push_back(e.token);
  }
  void OnFinished(const FinishedEvent& e) override {
    finished = true;
    fin = e;
    ++terminal;
  }
  void OnError(const Status& s) override {
    error = s;
    ++terminal;
  }
};

GenerationRequest Req(int prompt_tokens, int max_tokens) {
  GenerationRequest r;
  r.prompt.assign(static_cast<size_t>(prompt_tokens), 1);
  r.stop.max_tokens = max_tokens;
  return r;
}

struct Harness {
  FakeClock clock;
  FakeRunner runner;
  std::vector<std::unique_ptr<Recorder>> sinks;  // outlive the scheduler, which may end tasks
  std::vector<std::shared_ptr<GenerationTask>> tasks;
  Scheduler sched;

  Harness(int64_t blocks, SchedulerOptions o, int64_t host_blocks = 0)
      : runner(blocks, 2, 4, host_blocks), sched(&runner, o, &clock) {}

  // Submits a request; returns its index.
  size_t Add(GenerationRequest r, Status* submit = nullptr) {
    sinks.push_back(std::make_unique<Recorder>());
    tasks.push_back(std::make_shared<GenerationTask>(std::move(r), sinks.back().get()));
    Status s = sched.Submit(tasks.back());
    if (submit) *submit = s;
    else EXPECT_TRUE(s.ok()) << s.ToString();
    return tasks.size() - 1;
  }
  void Steps(int n) {
    for (int i = 0; i < n; ++i) sched.Step();
  }
};

// Worst case of Req(p, m) with 2 layers, 4-token blocks: 2 * (ceil(p/4) + ceil(m/4)).
TEST(Scheduler, WorstCaseBlocksArePromptPlusMaxTokensPerLayer) {
  Harness h(1000, {});
  auto b = h.sched.WorstCaseBlocks(Req(10, 5));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, 2 * (3 + 2));
}

TEST(Scheduler, WithoutABudgetAdmittedPromptsPrefillTogetherAndDecodeFromTheNextStep) {
  Harness h(1000, {.max_seqs = 8, .max_queue = 8});
  for (int i = 0; i < 3; ++i) h.Add(Req(5, 6));
  h.sched.Step();  // three prefills, each with its first token
  EXPECT_EQ(h.runner.prefills, 3);
  EXPECT_TRUE(h.runner.batches.empty());
  for (auto& s : h.sinks) EXPECT_EQ(s->tokens.size(), 1u);
  h.sched.Step();  // decode [1, 2, 3]
  EXPECT_EQ(h.runner.batches, (std::vector<int>{3}));
  h.Steps(10);
  for (auto& s : h.sinks) {
    EXPECT_TRUE(s->finished);
    EXPECT_EQ(s->fin.reason, FinishReason::kLength);
    EXPECT_EQ(s->tokens.size(), 6u);
    EXPECT_EQ(s->terminal, 1);
    EXPECT_EQ(s->start.prefill_chunks, 1);
  }
  EXPECT_EQ(h.runner.used(), 0);
  EXPECT_EQ(h.sched.Stats().committed_blocks, 0);
  EXPECT_EQ(h.sched.Stats().max_decode_batch, 3);
}

// With a budget of 8 tokens a 30-token prompt arriving beside two decoding streams is prefilled
// over 4 steps; the streams decode in every one of them, and each step's prefill work stays
// within the budget.
TEST(Scheduler, ABudgetChunksALongPromptBetweenTheRunningStreamsDecodes) {
  Harness h(1000, {.max_seqs = 8, .max_queue = 8, .max_prefill_tokens_per_step = 8});
  Harness alone(1000, {.max_seqs = 8, .max_queue = 8});
  for (Harness* x : {&h, &alone}) {
    x->Add(Req(4, 20));
    x->Add(Req(4, 20));
  }
  h.Steps(2);  // both prefilled in one step, then one decode
  ASSERT_EQ(h.runner.batches, (std::vector<int>{2}));
  h.Add(Req(30, 5));
  alone.Add(Req(30, 5));
  h.Steps(4);
  EXPECT_EQ(h.sinks[2]->started, 1) << "30 tokens in chunks of 8: 4 steps";
  EXPECT_EQ(h.sinks[2]->start.prefill_chunks, 4);
  EXPECT_EQ(h.runner.batches, (std::vector<int>{2, 2, 2, 2, 2})) << "the streams decode in every chunk's step";
  for (int64_t w : h.runner.step_work) EXPECT_LE(w, 8);
  h.Steps(40);
  alone.Steps(60);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(h.sinks[i]->finished) << i;
    EXPECT_EQ(h.sinks[i]->tokens, alone.sinks[i]->tokens) << i;
  }
  EXPECT_EQ(h.sched.Stats().prefill_chunks, 1 + 1 + 4);  // the first step's two prompts, then 4 chunks
  EXPECT_EQ(h.runner.used(), 0);
}

// FCFS under the budget: a short prompt arriving after a long one waits until the long one is
// prefilled (and then shares that step's leftover budget); nothing overtakes.
TEST(Scheduler, PrefillsAreFirstComeFirstServedUnderTheBudget) {
  Harness h(1000, {.max_seqs = 8, .max_queue = 8, .max_prefill_tokens_per_step = 10});
  const size_t long_one = h.Add(Req(25, 3));
  const size_t short_one = h.Add(Req(3, 3));
  h.Steps(2);  // 10 + 10 of the long prompt
  EXPECT_EQ(h.sinks[long_one]->started, 0);
  EXPECT_EQ(h.sinks[short_one]->started, 0) << "the short prompt must not overtake the long one";
  h.sched.Step();  // the last 5 of the long one and the short one's 3
  EXPECT_EQ(h.sinks[long_one]->started, 1);
  EXPECT_EQ(h.sinks[short_one]->started, 1);
  EXPECT_EQ(h.runner.step_work, (std::vector<int64_t>{10, 10, 8}));
  h.Steps(10);
  EXPECT_TRUE(h.sinks[long_one]->finished);
  EXPECT_TRUE(h.sinks[short_one]->finished);
}

TEST(Scheduler, CancelDuringAChunkedPrefillFreesItsBlocks) {
  Harness h(1000, {.max_seqs = 8, .max_queue = 8, .max_prefill_tokens_per_step = 4});
  const size_t a = h.Add(Req(40, 3));
  h.Steps(3);
  EXPECT_GT(h.runner.used(), 0);
  h.tasks[a]->Cancel(CancelledError("client went away"));
  h.sched.Step();
  EXPECT_EQ(h.sinks[a]->error.code(), StatusCode::kCancelled);
  EXPECT_EQ(h.sinks[a]->started, 0);
  EXPECT_EQ(h.runner.used(), 0);
  EXPECT_EQ(h.sched.Stats().committed_blocks, 0);
}

TEST(Scheduler, TokensFollowTheModelAndStopTokenEndsTheSequence) {
  Harness h(1000, {});
  GenerationRequest r = Req(3, 20);
  // Sequence 1, prompt 3: tokens are (len*7+1)%50 for len = 3, 4, 5 ... = 22, 29, 36, 43, ...
  r.stop.stop_token_ids = {36};
  const size_t i = h.Add(std::move(r));
  h.Steps(5);
  EXPECT_EQ(h.sinks[i]->tokens, (std::vector<int32_t>{22, 29, 36}));
  EXPECT_EQ(h.sinks[i]->fin.reason, FinishReason::kStopToken);
  EXPECT_EQ(h.sinks[i]->fin.completion_tokens, 3);
  EXPECT_EQ(h.runner.live(), 0);
}

TEST(Scheduler, FcfsAdmissionWaitsForBlocksWithoutJumpingAhead) {
  // 24 blocks. A: worst 2*(2+2)=8. B: worst 2*(4+4)=16 -> A+B = 24 fit. C: 8 more -> waits, and
  // small D behind C must wait too.
  Harness h(24, {.max_seqs = 8, .max_queue = 8});
  const size_t a = h.Add(Req(8, 8));
  const size_t b = h.Add(Req(16, 16));
  const size_t c = h.Add(Req(8, 8));
  const size_t d = h.Add(Req(1, 1));
  h.Steps(2);
  EXPECT_EQ(h.sinks[a]->started, 1);
  EXPECT_EQ(h.sinks[b]->started, 1);
  h.Steps(3);
  EXPECT_EQ(h.sinks[c]->started, 0) << "C does not fit until A ends";
  EXPECT_EQ(h.sinks[d]->started, 0) << "D would fit but must not overtake C";
  EXPECT_EQ(h.sched.Stats().committed_blocks, 24);
  EXPECT_EQ(h.sched.Stats().waiting, 2);
  h.Steps(40);
  for (size_t i : {a, b, c, d}) EXPECT_TRUE(h.sinks[i]->finished) << i;
  EXPECT_EQ(h.runner.used(), 0);
}

TEST(Scheduler, WithAHostTierNewRequestsSwapOutTheYoungestAndEveryoneKeepsItsTokens) {
  // 16 gpu blocks hold two Req(8, 8) (worst 8 each). Without a host tier C and D would wait
  // for A and B to end; with one, C swaps B out for its prefill, B (older) swaps C out again,
  // and so on: each request gets exactly the tokens it gets alone, and the swapped sequence is
  // never decoded (the fake refuses that).
  Harness alone(1000, {.max_seqs = 8, .max_queue = 8});
  Harness h(16, {.max_seqs = 8, .max_queue = 8}, /*host_blocks=*/100);
  for (Harness* x : {&alone, &h})
    for (int i = 0; i < 4; ++i) x->Add(Req(8, 8));
  alone.Steps(40);
  h.Steps(2);  // A and B prefilled together; then C swaps B out for its prefill
  EXPECT_EQ(h.sinks[2]->started, 1) << "C prefilled by swapping B out";
  EXPECT_EQ(h.sched.Stats().preemptions, 1);
  h.Steps(1);
  EXPECT_EQ(h.sched.Stats().preemptions, 2) << "B, older than C, takes its place back";
  EXPECT_EQ(h.sched.Stats().swapped, 1);
  h.Steps(60);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(h.sinks[i]->finished) << i;
    EXPECT_EQ(h.sinks[i]->tokens, alone.sinks[i]->tokens) << i;
    EXPECT_EQ(h.sinks[i]->terminal, 1) << i;
  }
  EXPECT_GT(h.runner.swap_outs, 2);
  EXPECT_EQ(h.sched.Stats().swapped, 0);
  EXPECT_EQ(h.runner.used(), 0);
  EXPECT_EQ(h.runner.host_used(), 0);
  EXPECT_EQ(h.sched.Stats().committed_blocks, 0);
}

TEST(Scheduler, CancelWhileSwappedOutEndsTheTaskAndFreesItsBlocks) {
  Harness h(40, {.max_seqs = 8, .max_queue = 8}, 100);  // two Req(8, 30) (worst 20 each)
  for (int i = 0; i < 3; ++i) h.Add(Req(8, 30));
  h.Steps(2);  // A, B running; C swapped B out
  ASSERT_EQ(h.runner.swapped.size(), 1u);
  const kv::SeqId victim = *h.runner.swapped.begin();
  h.tasks[1]->Cancel(CancelledError("client went away"));
  h.Steps(1);
  EXPECT_EQ(h.sinks[1]->error.code(), StatusCode::kCancelled);
  EXPECT_TRUE(h.runner.released.count(victim));
  h.Steps(80);
  EXPECT_TRUE(h.sinks[0]->finished);
  EXPECT_TRUE(h.sinks[2]->finished);
  EXPECT_EQ(h.runner.used(), 0);
  EXPECT_EQ(h.runner.host_used(), 0);
}

TEST(Scheduler, MaxSeqsBoundsTheRunningSet) {
  Harness h(1000, {.max_seqs = 2, .max_queue = 8});
  for (int i = 0; i < 4; ++i) h.Add(Req(4, 10));
  h.Steps(4);
  EXPECT_EQ(h.sched.Stats().running, 2);
  EXPECT_EQ(h.sched.Stats().waiting, 2);
  for (int b : h.runner.batches) EXPECT_LE(b, 2);
}

TEST(Scheduler, RefusesWhatCanNeverFitAndAFullQueue) {
  Harness h(20, {.max_seqs = 1, .max_queue = 2});
  Status s;
  h.Add(Req(40, 1), &s);  // 2 * (10 + 1) = 22 > 20
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("KV blocks"), std::string::npos) << s.message();
  h.Add(Req(4, 4));
  h.Add(Req(4, 4));
  h.Add(Req(4, 4), &s);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("queue is full"), std::string::npos) << s.message();
  EXPECT_EQ(h.sinks[0]->terminal, 0) << "a refused task gets no events";
  h.sched.Step();  // one admitted: the queue has room again
  h.Add(Req(4, 4), &s);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

// Issue 16: --max-queue 0 means no waiting: a request is accepted only when it can start at
// once (a free sequence slot and its worst case within the uncommitted blocks, counting those
// accepted before it), so an idle server accepts it.
TEST(Scheduler, MaxQueueZeroAcceptsWhatCanStartAtOnce) {
  Harness h(20, {.max_seqs = 2, .max_queue = 0});
  Status s;
  const size_t a = h.Add(Req(8, 12), &s);  // worst case 2 * (2 + 3) = 10
  EXPECT_TRUE(s.ok()) << "an idle server accepts: " << s.ToString();
  const size_t b = h.Add(Req(8, 12), &s);  // 10 + 10 <= 20, 2 <= max_seqs
  EXPECT_TRUE(s.ok()) << s.ToString();
  h.Add(Req(4, 4), &s);  // no third slot
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  h.Steps(2);
  EXPECT_EQ(h.sched.Stats().running, 2);
  EXPECT_EQ(h.sched.Stats().waiting, 0);
  h.Steps(20);
  EXPECT_TRUE(h.sinks[a]->finished);
  EXPECT_TRUE(h.sinks[b]->finished);
  Harness k(20, {.max_seqs = 4, .max_queue = 0});
  k.Add(Req(8, 12));
  k.Add(Req(8, 12));
  k.Add(Req(4, 4), &s);  // a slot, but its blocks are all promised
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("--max-queue 0"), std::string::npos) << s.message();
}

// Issue 16: cancelled queued tasks give their queue slots back at once, not at the next step.
TEST(Scheduler, CancelledQueuedTasksDoNotHoldQueueSlots) {
  Harness h(1000, {.max_seqs = 1, .max_queue = 2});
  h.Add(Req(4, 20));
  h.sched.Step();
  const size_t b = h.Add(Req(4, 4));
  const size_t c = h.Add(Req(4, 4));
  Status s;
  h.Add(Req(4, 4), &s);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  h.tasks[b]->Cancel(CancelledError("client cancelled"));
  h.tasks[c]->Cancel(CancelledError("client cancelled"));
  EXPECT_EQ(h.sched.Stats().waiting, 0);
  const size_t d = h.Add(Req(4, 4), &s);
  EXPECT_TRUE(s.ok()) << s.ToString();
  const size_t e = h.Add(Req(4, 4), &s);
  EXPECT_TRUE(s.ok()) << s.ToString();
  h.Add(Req(4, 4), &s);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(h.sched.Stats().waiting, 2);
  h.sched.Step();
  EXPECT_EQ(h.sinks[b]->error.code(), StatusCode::kCancelled);
  EXPECT_EQ(h.sinks[c]->error.code(), StatusCode::kCancelled);
  h.Steps(40);
  EXPECT_TRUE(h.sinks[d]->finished);
  EXPECT_TRUE(h.sinks[e]->finished);
  EXPECT_EQ(h.sched.live(), 0);
}

TEST(Scheduler, DeadlineWhileQueuedEndsTheTaskWithoutPrefill) {
  Harness h(1000, {.max_seqs = 1, .max_queue = 4});
  const size_t a = h.Add(Req(4, 50));
  GenerationRequest r = Req(4, 4);
  r.deadline = h.clock.Now() + 100ms;
  const size_t b = h.Add(std::move(r));
  h.Steps(3);
  EXPECT_EQ(h.sinks[b]->terminal, 0);
  h.clock.Advance(150ms);
  h.sched.Step();
  EXPECT_EQ(h.sinks[b]->error.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(h.sinks[b]->started, 0);
  EXPECT_EQ(h.runner.prefills, 1) << "only A was prefilled";
  EXPECT_EQ(h.sched.Stats().waiting, 0);
  h.Steps(60);
  EXPECT_TRUE(h.sinks[a]->finished);
  EXPECT_EQ(h.sinks[a]->tokens.size(), 50u);
}

TEST(Scheduler, DeadlineAndCancelWhileRunningFreeKvAtTheNextStep) {
  Harness h(1000, {.max_seqs = 4, .max_queue = 4});
  GenerationRequest r = Req(6, 100);
  r.deadline = h.clock.Now() + 1s;
  const size_t a = h.Add(std::move(r));
  const size_t b = h.Add(Req(6, 100));
  const size_t c = h.Add(Req(6, 30));
  h.Steps(5);
  EXPECT_EQ(h.runner.live(), 3);
  h.tasks[b]->Cancel(CancelledError("client cancelled"));
  h.sched.Step();
  EXPECT_EQ(h.sinks[b]->error.code(), StatusCode::kCancelled);
  EXPECT_TRUE(h.runner.released.count(2));
  EXPECT_EQ(h.runner.live(), 2);
  h.clock.Advance(2s);
  h.sched.Step();
  EXPECT_EQ(h.sinks[a]->error.code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(h.sinks[a]->error.message().find("generated tokens"), std::string::npos);
  EXPECT_EQ(h.runner.live(), 1);
  h.Steps(40);
  EXPECT_TRUE(h.sinks[c]->finished);
  EXPECT_EQ(h.sinks[c]->tokens.size(), 30u) << "the other stream is not disturbed";
  EXPECT_EQ(h.runner.used(), 0);
  for (auto& s : h.sinks) EXPECT_EQ(s->terminal, 1);
}

TEST(Scheduler, CancelWhileQueued) {
  Harness h(1000, {.max_seqs = 1, .max_queue = 4});
  h.Add(Req(4, 20));
  const size_t b = h.Add(Req(4, 4));
  h.sched.Step();
  h.tasks[b]->Cancel(Status(StatusCode::kAborted, "aborted"));
  EXPECT_FALSE(h.tasks[b]->Cancel(CancelledError("second"))) << "first cancel wins";
  h.sched.Step();
  EXPECT_EQ(h.sinks[b]->error.code(), StatusCode::kAborted);
  EXPECT_EQ(h.runner.prefills, 1);
}

TEST(Scheduler, TimingsComeFromTheInjectedClock) {
  Harness h(1000, {.max_seqs = 1, .max_queue = 4});
  h.Add(Req(4, 3));
  const size_t b = h.Add(Req(4, 2));
  h.sched.Step();
  h.clock.Advance(250ms);
  h.Steps(10);
  ASSERT_TRUE(h.sinks[b]->finished);
  EXPECT_NEAR(h.sinks[b]->start.queue_ms, 250.0, 1e-6);
  EXPECT_NEAR(h.sinks[b]->fin.queue_ms, 250.0, 1e-6);
}

TEST(Scheduler, ShutdownEndsEveryLiveTaskAndFreesKv) {
  Harness h(1000, {.max_seqs = 1, .max_queue = 4});
  h.Add(Req(4, 100));
  h.Add(Req(4, 100));
  h.Steps(3);
  h.sched.Shutdown(UnavailableError("shutting down"));
  for (auto& s : h.sinks) {
    EXPECT_EQ(s->error.code(), StatusCode::kUnavailable);
    EXPECT_EQ(s->terminal, 1);
  }
  EXPECT_EQ(h.runner.used(), 0);
  Status s;
  h.Add(Req(4, 4), &s);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
}

TEST(Scheduler, ThreadedRunCompletesEverything) {
  SteadyClock clock;
  FakeRunner runner(10000);
  Scheduler sched(&runner, {.max_seqs = 4, .max_queue = 64}, &clock);
  sched.Start();
  std::vector<std::unique_ptr<Recorder>> sinks;
  std::vector<std::shared_ptr<GenerationTask>> tasks;
  for (int i = 0; i < 20; ++i) {
    sinks.push_back(std::make_unique<Recorder>());
    tasks.push_back(std::make_shared<GenerationTask>(Req(3 + i, 5 + i % 4), sinks.back().get()));
    ASSERT_TRUE(sched.Submit(tasks.back()).ok());
  }
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (sched.live() > 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  sched.Shutdown(UnavailableError("done"));
  for (size_t i = 0; i < sinks.size(); ++i) {
    EXPECT_TRUE(sinks[i]->finished) << i;
    EXPECT_EQ(sinks[i]->tokens.size(), 5u + i % 4);
  }
  EXPECT_EQ(runner.used(), 0);
}

}  // namespace
}  // namespace slim::server
