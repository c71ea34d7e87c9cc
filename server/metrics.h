// Prometheus metrics of the server: the request histograms and counters the RPC layer and the
// scheduler observe, and (at scrape time) the scheduler and KV store stats. This is the one file
// that turns engine/kvstore/scheduler stats structs into Prometheus families.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "engine/core/status.h"
#include "kvstore/kv_store.h"
#include "server/scheduler.h"

namespace slim::server {

class ServerMetrics final : public SchedulerObserver {
 public:
  ServerMetrics();
  ~ServerMetrics() override;

  // What the scrape-time families read; set once the engine is up (null = not exported yet).
  void SetSources(const kv::KvStore* kv, const Scheduler* scheduler);

  // RPC layer.
  void ObserveTtft(double seconds);
  void ObserveInterToken(double seconds);
  void ObserveE2e(double seconds);
  // Counts one finished Generate call by outcome: "ok" or the lower-case status code name.
  void CountRequest(StatusCode code);
  static std::string OutcomeName(StatusCode code);
  // A request that completed: its finish reason (FinishReasonName) and token counts.
  void ObserveCompleted(const std::string& finish_reason, int64_t prompt_tokens, int64_t generation_tokens);
  // A Generate stream cancelled because its client read nothing for --stream-write-timeout-s.
  void CountWriteTimeout();

  // SchedulerObserver (scheduler thread).
  void OnAdmitted(double queue_seconds) override;
  void OnPrefill(double seconds, int64_t prompt_tokens, int64_t pruned_tokens) override;
  void OnPrefillChunk(int64_t work_tokens) override;
  void OnDecodeStep(int batch, double seconds) override;
  void OnGeneratedTokens(int64_t n) override;

  // The text exposition of every family (what the HTTP listener's /metrics serves).
  std::string Render() const;

 private:
  class StatsCollectable;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<StatsCollectable> stats_;

  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Histogram* e2e_;
  prometheus::Histogram* prompt_hist_;
  prometheus::Histogram* generation_hist_;
  prometheus::Family<prometheus::Counter>* success_;
  prometheus::Histogram* queue_;
  prometheus::Histogram* prefill_;
  prometheus::Histogram* decode_step_;
  prometheus::Histogram* decode_batch_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Counter* prefill_chunks_;
  prometheus::Counter* pruned_tokens_;
  prometheus::Counter* write_timeouts_;
};

}  // namespace slim::server
