// Prometheus families of the server. Histogram buckets resolve 1 ms .. 120 s (fine steps near
// 5 ms for inter-token latency, coarse ones up to 60 s+ for long-prompt TTFT and prefill).
#include "server/metrics.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <limits>
#include <cctype>
#include <sstream>

namespace slim::server {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries b = {
      0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
      0.75,  1.0,    1.5,   2.0,    3.0,  4.0,   5.0,  7.5,  10.0, 15.0, 20.0,  30.0, 45.0, 60.0, 90.0, 120.0,
      180.0, 300.0, 450.0, 600.0};  // up to 600 s: long prompts prefilled on the CPU
  return b;
}

// Token counts per request, 1 .. 256K.
const prometheus::Histogram::BucketBoundaries& TokenBuckets() {
  static const prometheus::Histogram::BucketBoundaries b = {1,    2,    4,    8,     16,    32,    64,    128,
                                                            256,  512,  1024, 2048,  4096,  8192,  16384, 32768,
                                                            65536, 131072, 262144};
  return b;
}

prometheus::Histogram* MakeHistogram(prometheus::Registry& r, const std::string& name, const std::string& help,
                                     const prometheus::Histogram::BucketBoundaries& buckets) {
  return &prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, buckets);
}

prometheus::Counter* MakeCounter(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

MetricFamily Gauges(const std::string& name, const std::string& help) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = MetricType::Gauge;
  return f;
}

void AddGauge(MetricFamily* f, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  f->metric.push_back(std::move(m));
}

void AddCounter(MetricFamily* f, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = value;
  f->metric.push_back(std::move(m));
}

MetricFamily Counters(const std::string& name, const std::string& help) {
  MetricFamily f = Gauges(name, help);
  f.type = MetricType::Counter;
  return f;
}

MetricFamily HistogramFamily(const std::string& name, const std::string& help, const kv::HistogramData& h) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = MetricType::Histogram;
  ClientMetric m;
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    m.histogram.bucket.push_back({static_cast<uint64_t>(h.counts[i]), h.bounds[i]});
  }
  m.histogram.bucket.push_back({static_cast<uint64_t>(h.counts.back()), std::numeric_limits<double>::infinity()});
  m.histogram.sample_count = static_cast<uint64_t>(h.counts.back());
  m.histogram.sample_sum = h.sum;
  f.metric.push_back(std::move(m));
  return f;
}

// The KV store's families: blocks by tier and state, bytes, capacity, usage, transfers,
// prefetches and evictions.
void AddKvFamilies(const kv::KvStoreStats& st, std::vector<MetricFamily>* out) {
  MetricFamily blocks = Gauges("sliminfer_kv_blocks",
                               "KV cache blocks by tier and state (state=used: every block holding a slot of the "
                               "tier; the other states split it, plus free).");
  MetricFamily bytes = Gauges("sliminfer_kv_bytes", "Bytes of KV cache blocks in use, by tier.");
  MetricFamily capacity = Gauges("sliminfer_kv_capacity_bytes", "Bytes of the KV cache tier, by tier.");
  MetricFamily usage = Gauges("sliminfer_kv_usage_ratio", "Share of the tier's blocks in use, by tier.");
  MetricFamily allocs = Counters("sliminfer_kv_block_allocations_total", "KV blocks handed out, by tier.");
  for (const auto& [name, t] : {std::pair<const char*, const kv::TierStats*>{"gpu", &st.gpu}, {"host", &st.host}}) {
    const std::string tier = name;
    AddGauge(&blocks, {{"tier", tier}, {"state", "used"}}, static_cast<double>(t->pool.used_blocks));
    for (int s = 0; s < kv::kBlockStates; ++s) {
      AddGauge(&blocks, {{"tier", tier}, {"state", kv::BlockStateName(static_cast<kv::BlockState>(s))}},
               static_cast<double>(t->by_state[s]));
    }
    AddGauge(&bytes, {{"tier", tier}}, static_cast<double>(t->bytes_in_use));
    AddGauge(&capacity, {{"tier", tier}}, static_cast<double>(t->capacity_bytes));
    AddGauge(&usage, {{"tier", tier}},
             t->capacity_blocks > 0 ? static_cast<double>(t->pool.used_blocks) / static_cast<double>(t->capacity_blocks)
                                    : 0.0);
    AddCounter(&allocs, {{"tier", tier}}, static_cast<double>(t->pool.allocations));
  }
  MetricFamily seqs = Gauges("sliminfer_kv_sequences", "Sequences holding KV blocks.");
  AddGauge(&seqs, {}, static_cast<double>(st.sequences));
  MetricFamily swapped = Gauges("sliminfer_kv_swapped_sequences", "Sequences whose KV is off the gpu tier.");
  AddGauge(&swapped, {}, static_cast<double>(st.swapped_sequences));
  MetricFamily tbytes = Counters("sliminfer_kv_transfer_bytes_total", "KV bytes copied between tiers, by direction.");
  MetricFamily tsecs = Counters("sliminfer_kv_transfer_seconds_total",
                                "Copy-stream time of KV transfers, by direction (device events on CUDA).");
  for (kv::CopyDir d : {kv::CopyDir::kH2D, kv::CopyDir::kD2H}) {
    AddCounter(&tbytes, {{"direction", kv::CopyDirName(d)}}, static_cast<double>(st.transfers.bytes[static_cast<int>(d)]));
    AddCounter(&tsecs, {{"direction", kv::CopyDirName(d)}}, st.transfers.seconds[static_cast<int>(d)]);
  }
  MetricFamily prefetch = Counters(
      "sliminfer_kv_prefetch_total",
      "KV prefetches (host -> gpu tier) by result: hit (every block already resident), fetched (copied and landed "
      "before compute needed it), late (compute waited for it), skipped_gamma (a decode KV selection kept its set by "
      "the gamma rule: nothing to fetch), failed (no room on the gpu tier).");
  AddCounter(&prefetch, {{"result", "hit"}}, static_cast<double>(st.prefetch_hit));
  AddCounter(&prefetch, {{"result", "fetched"}}, static_cast<double>(st.transfers.prefetch_on_time));
  AddCounter(&prefetch, {{"result", "late"}}, static_cast<double>(st.transfers.prefetch_late));
  AddCounter(&prefetch, {{"result", "skipped_gamma"}}, static_cast<double>(st.selections_kept));
  AddCounter(&prefetch, {{"result", "failed"}}, static_cast<double>(st.prefetch_failed));
  MetricFamily evictions = Counters("sliminfer_kv_evictions_total", "Gpu-tier KV blocks released by offloads.");
  AddCounter(&evictions, {}, static_cast<double>(st.evictions));
  out->push_back(std::move(blocks));
  out->push_back(std::move(bytes));
  out->push_back(std::move(capacity));
  out->push_back(std::move(usage));
  out->push_back(std::move(allocs));
  out->push_back(std::move(seqs));
  out->push_back(std::move(swapped));
  out->push_back(std::move(tbytes));
  out->push_back(std::move(tsecs));
  out->push_back(HistogramFamily("sliminfer_kv_transfer_batch_bytes", "Bytes per batched KV copy between tiers.",
                                 st.transfers.batch_bytes));
  out->push_back(std::move(prefetch));
  out->push_back(HistogramFamily("sliminfer_kv_prefetch_wait_seconds",
                                 "Per prefetch, seconds compute stood still waiting for it (device events on CUDA; "
                                 "0: it had landed before compute needed it).",
                                 st.transfers.prefetch_wait));
  out->push_back(HistogramFamily("sliminfer_kv_selection_overlap_ratio",
                                 "Per decode KV selection, the share of the chosen blocks already in the set in "
                                 "force (at or above gamma the set stays).",
                                 st.selection_overlap));
  out->push_back(std::move(evictions));
}

}  // namespace

// Families computed at scrape time from the scheduler's and the KV store's stats structs.
class ServerMetrics::StatsCollectable final : public prometheus::Collectable {
 public:
  std::atomic<const kv::KvStore*> kv{nullptr};
  std::atomic<const Scheduler*> scheduler{nullptr};

  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out;
    if (const Scheduler* s = scheduler.load()) {
      const SchedulerStats st = s->Stats();
      MetricFamily waiting = Gauges("sliminfer_num_requests_waiting", "Requests queued for admission.");
      AddGauge(&waiting, {}, static_cast<double>(st.waiting));
      MetricFamily running = Gauges("sliminfer_num_requests_running", "Sequences prefilling or decoding.");
      AddGauge(&running, {}, static_cast<double>(st.running));
      MetricFamily committed = Gauges("sliminfer_kv_blocks_committed",
                                      "Worst-case KV blocks promised to running sequences (admission budget in use).");
      AddGauge(&committed, {}, static_cast<double>(st.committed_blocks));
      MetricFamily budget = Gauges("sliminfer_kv_blocks_budget", "KV blocks the scheduler may promise in all.");
      AddGauge(&budget, {}, static_cast<double>(st.budget_blocks));
      out.push_back(std::move(waiting));
      out.push_back(std::move(running));
      out.push_back(std::move(committed));
      out.push_back(std::move(budget));
      MetricFamily preempt = Counters("sliminfer_num_preemptions_total",
                                      "Running sequences swapped out to the host tier to make room.");
      AddCounter(&preempt, {}, static_cast<double>(st.preemptions));
      out.push_back(std::move(preempt));
    }
    if (const kv::KvStore* k = kv.load()) AddKvFamilies(k->Stats(), &out);
    return out;
  }
};

ServerMetrics::ServerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()), stats_(std::make_shared<StatsCollectable>()) {
  prometheus::Registry& r = *registry_;
  ttft_ = MakeHistogram(r, "sliminfer_time_to_first_token_seconds",
                        "Arrival of a Generate call to its first token written to the stream.", LatencyBuckets());
  itl_ = MakeHistogram(r, "sliminfer_inter_token_latency_seconds",
                       "Time between consecutive token writes of one stream.", LatencyBuckets());
  e2e_ = MakeHistogram(r, "sliminfer_e2e_request_latency_seconds",
                       "Arrival of a Generate call or completion request to its end (any outcome).", LatencyBuckets());
  queue_ = MakeHistogram(r, "sliminfer_request_queue_time_seconds", "Arrival to admission (prefill start).",
                         LatencyBuckets());
  prefill_ = MakeHistogram(r, "sliminfer_prefill_time_seconds", "Prompt forward pass (after pruning) per request.",
                           LatencyBuckets());
  decode_step_ = MakeHistogram(r, "sliminfer_decode_step_seconds", "One batched decode step over the running sequences.",
                               LatencyBuckets());
  decode_batch_ = MakeHistogram(r, "sliminfer_decode_batch_size", "Sequences per batched decode step.",
                                {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256});
  prompt_hist_ = MakeHistogram(r, "sliminfer_request_prompt_tokens", "Prompt tokens of each completed request.",
                               TokenBuckets());
  generation_hist_ = MakeHistogram(r, "sliminfer_request_generation_tokens",
                                   "Generated tokens of each completed request.", TokenBuckets());
  success_ = &prometheus::BuildCounter()
                  .Name("sliminfer_request_success_total")
                  .Help("Requests that completed (outcome ok), by why generation ended: length (max_tokens), stop "
                        "(a stop string), stop_token (a stop_token_ids entry), eos (the model's end of generation).")
                  .Register(r);
  for (FinishReason f : {FinishReason::kLength, FinishReason::kStopString, FinishReason::kStopToken,
                         FinishReason::kEndOfGeneration}) {
    success_->Add({{"finish_reason", FinishReasonName(f)}});
  }
  requests_ = &prometheus::BuildCounter()
                   .Name("sliminfer_requests_total")
                   .Help("Generate calls (gRPC) and completion requests (HTTP) by outcome (ok, or the lower-case gRPC status of "
                         "the failure).")
                   .Register(r);
  for (StatusCode c : {StatusCode::kOk, StatusCode::kCancelled, StatusCode::kDeadlineExceeded, StatusCode::kAborted,
                       StatusCode::kInvalidArgument, StatusCode::kResourceExhausted, StatusCode::kUnavailable,
                       StatusCode::kUnauthenticated, StatusCode::kInternal}) {
    requests_->Add({{"outcome", OutcomeName(c)}});
  }
  prompt_tokens_ = MakeCounter(r, "sliminfer_prompt_tokens_total", "Prompt tokens prefilled.");
  generation_tokens_ = MakeCounter(r, "sliminfer_generation_tokens_total", "Tokens generated.");
  pruned_tokens_ = MakeCounter(r, "sliminfer_pruned_prompt_tokens_total",
                               "Prompt tokens dropped by SlimInfer pruning (not alive at the last layer).");
  prefill_chunks_ = MakeCounter(r, "sliminfer_prefill_chunks_total",
                                "Engine steps that ran part or all of a prefill (one per prompt per step).");
  write_timeouts_ = MakeCounter(r, "sliminfer_stream_write_timeouts_total",
                                "gRPC Generate streams cancelled because the client read nothing for "
                                "--stream-write-timeout-s (also counted in sliminfer_requests_total as cancelled).");
}

ServerMetrics::~ServerMetrics() = default;

void ServerMetrics::SetSources(const kv::KvStore* kv, const Scheduler* scheduler) {
  stats_->kv.store(kv);
  stats_->scheduler.store(scheduler);
}

void ServerMetrics::ObserveTtft(double s) { ttft_->Observe(s); }
void ServerMetrics::ObserveInterToken(double s) { itl_->Observe(s); }
void ServerMetrics::ObserveE2e(double s) { e2e_->Observe(s); }

std::string ServerMetrics::OutcomeName(StatusCode code) {
  if (code == StatusCode::kOk) return "ok";
  std::string s = StatusCodeName(code);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

void ServerMetrics::CountRequest(StatusCode code) { requests_->Add({{"outcome", OutcomeName(code)}}).Increment(); }

void ServerMetrics::ObserveCompleted(const std::string& finish_reason, int64_t prompt_tokens,
                                     int64_t generation_tokens) {
  success_->Add({{"finish_reason", finish_reason}}).Increment();
  prompt_hist_->Observe(static_cast<double>(prompt_tokens));
  generation_hist_->Observe(static_cast<double>(generation_tokens));
}

void ServerMetrics::CountWriteTimeout() { write_timeouts_->Increment(); }

void ServerMetrics::OnAdmitted(double queue_seconds) { queue_->Observe(queue_seconds); }

void ServerMetrics::OnPrefill(double seconds, int64_t prompt_tokens, int64_t pruned_tokens) {
  prefill_->Observe(seconds);
  prompt_tokens_->Increment(static_cast<double>(prompt_tokens));
  pruned_tokens_->Increment(static_cast<double>(pruned_tokens));
}

void ServerMetrics::OnPrefillChunk(int64_t) { prefill_chunks_->Increment(); }

void ServerMetrics::OnDecodeStep(int batch, double seconds) {
  decode_step_->Observe(seconds);
  decode_batch_->Observe(static_cast<double>(batch));
}

void ServerMetrics::OnGeneratedTokens(int64_t n) { generation_tokens_->Increment(static_cast<double>(n)); }

std::string ServerMetrics::Render() const {
  std::vector<MetricFamily> families = registry_->Collect();
  for (MetricFamily& f : stats_->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace slim::server
