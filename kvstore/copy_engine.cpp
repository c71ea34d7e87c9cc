// CopyEngine: per-direction workers, tickets with per-group markers, transfer stats.
#include "kvstore/copy_engine.h"

#include <algorithm>

namespace slim::kv {

void HistogramData::Observe(double v) {
  for (size_t i = 0; i < bounds.size(); ++i)
    if (v <= bounds[i]) ++counts[i];
  ++counts.back();
  sum += v;
}

HistogramData HistogramData::WithBounds(std::vector<double> bounds) {
  HistogramData h;
  h.bounds = std::move(bounds);
  h.counts.assign(h.bounds.size() + 1, 0);
  return h;
}

CopyEngine::CopyEngine(TierMemory* memory, DoneCallback on_done) : memory_(memory), on_done_(std::move(on_done)) {
  stats_.batch_bytes = HistogramData::WithBounds(
      {64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30});
  stats_.prefetch_wait =
      HistogramData::WithBounds({0.0, kLateSeconds, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0});
  workers_[0] = std::thread([this] { Worker(CopyDir::kH2D); });
  workers_[1] = std::thread([this] { Worker(CopyDir::kD2H); });
}

CopyEngine::~CopyEngine() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

TicketId CopyEngine::Submit(CopyJob job) {
  std::lock_guard<std::mutex> l(mu_);
  const TicketId id = ++next_;
  Ticket& t = live_[id];
  t.dir = job.dir;
  t.n_groups = job.groups.size();
  t.markers.assign(t.n_groups, 0);
  t.empty.resize(t.n_groups);
  t.queued.assign(t.n_groups, false);
  for (size_t g = 0; g < t.n_groups; ++g) t.empty[g] = job.groups[g].empty();
  if (!job.order.empty()) {
    // Anything but a permutation of the groups is a caller's bug: issue in index order then.
    std::vector<bool> seen(t.n_groups, false);
    bool ok = job.order.size() == t.n_groups;
    for (size_t g : job.order) {
      if (!ok || g >= t.n_groups || seen[g]) {
        ok = false;
        break;
      }
      seen[g] = true;
    }
    if (!ok) job.order.clear();
  }
  if (job.dir == CopyDir::kH2D) outcomes_[id] = Outcome{};
  queue_[static_cast<int>(job.dir)].emplace_back(id, std::move(job));
  cv_.notify_all();
  return id;
}

void CopyEngine::Worker(CopyDir dir) {
  const int d = static_cast<int>(dir);
  for (;;) {
    std::pair<TicketId, CopyJob> item;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stopping_ || !queue_[d].empty(); });
      if (queue_[d].empty()) return;  // stopping with nothing left
      item = std::move(queue_[d].front());
      queue_[d].pop_front();
    }
    const Status st = Run(item.first, item.second);
    // The store sees the copy's outcome before any waiter is released.
    if (on_done_) on_done_(item.first, st);
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = live_.find(item.first);
      Ticket& t = it->second;
      for (Marker m : t.markers)
        if (m != 0) memory_->ReleaseMarker(m);
      if (!st.ok()) {
        ++stats_.failed_jobs;
        failed_[item.first] = st;
      }
      live_.erase(it);
      if (auto o = outcomes_.find(item.first); o != outcomes_.end()) {
        o->second.done = true;
        CountIfComplete(item.first);
      }
    }
    cv_.notify_all();
    Poll();
  }
}

void CopyEngine::CountIfComplete(TicketId id) {
  auto o = outcomes_.find(id);
  if (o == outcomes_.end() || !o->second.done || o->second.pending > 0) return;
  const double stall = o->second.stall;
  stats_.prefetch_wait.Observe(stall);
  stats_.prefetch_stall_seconds += stall;
  ++(stall > kLateSeconds ? stats_.prefetch_late : stats_.prefetch_on_time);
  outcomes_.erase(o);
}

void CopyEngine::Poll() {
  std::vector<TierMemory::ProbeResult> done;
  memory_->PollProbes(&done);
  if (done.empty()) return;
  std::lock_guard<std::mutex> l(mu_);
  for (const TierMemory::ProbeResult& r : done) {
    auto p = probes_.find(r.probe);
    if (p == probes_.end()) continue;
    const TicketId id = p->second;
    probes_.erase(p);
    auto o = outcomes_.find(id);
    if (o == outcomes_.end()) continue;
    o->second.stall += r.stall_seconds;
    --o->second.pending;
    CountIfComplete(id);
  }
}

Status CopyEngine::Run(TicketId id, const CopyJob& job) {
  if (job.after_ticket != 0) SLIM_RETURN_IF_ERROR(HostWait(job.after_ticket));
  SLIM_ASSIGN_OR_RETURN(const Marker start, memory_->Mark(job.dir));
  Marker last = start;
  Status st;
  bool fenced = false;  // the compute fence is waited for before the first batch only
  int64_t bytes = 0;
  std::vector<int64_t> batch_bytes;
  for (size_t k = 0; k < job.groups.size() && st.ok(); ++k) {
    const size_t g = job.order.empty() ? k : job.order[k];
    Marker m = 0;
    if (!job.groups[g].empty()) {
      StatusOr<Marker> r = memory_->CopyBatch(job.dir, fenced ? 0 : job.after, job.groups[g]);
      fenced = true;
      if (!r.ok()) {
        st = r.status();
        break;
      }
      m = *r;
      last = m;
      int64_t b = 0;
      for (const CopyRange& c : job.groups[g]) b += static_cast<int64_t>(c.bytes);
      bytes += b;
      batch_bytes.push_back(b);
    }
    std::lock_guard<std::mutex> l(mu_);
    Ticket& t = live_.at(id);
    t.markers[g] = m;
    t.queued[g] = true;
    ++t.n_queued;
    cv_.notify_all();
  }
  if (st.ok() && last != start) st = memory_->HostWait(last);
  const double secs = st.ok() && last != start ? memory_->Elapsed(start, last) : 0.0;
  memory_->ReleaseMarker(start);
  std::lock_guard<std::mutex> l(mu_);
  Ticket& t = live_.at(id);
  t.queued.assign(t.n_groups, true);
  t.n_queued = t.n_groups;
  const int d = static_cast<int>(job.dir);
  if (st.ok()) {
    stats_.bytes[d] += bytes;
    stats_.seconds[d] += secs;
    ++stats_.jobs[d];
    for (int64_t b : batch_bytes) stats_.batch_bytes.Observe(static_cast<double>(b));
  }
  return st;
}

void CopyEngine::ComputeWait(TicketId ticket, int group) {
  {
    std::unique_lock<std::mutex> l(mu_);
    auto it = live_.find(ticket);
    if (it == live_.end()) return;
    Ticket& t = it->second;
    // A layer this ticket copies nothing for: nothing to wait for (nor for the worker to reach it).
    if (group >= 0 && (static_cast<size_t>(group) >= t.n_groups || t.empty[static_cast<size_t>(group)])) return;
    // The engine thread stands still here until the worker has queued (CPU: copied) the group.
    const auto t0 = std::chrono::steady_clock::now();
    cv_.wait(l, [&] {
      auto i = live_.find(ticket);
      if (i == live_.end()) return true;
      return group < 0 ? i->second.n_queued >= i->second.n_groups : i->second.queued[static_cast<size_t>(group)];
    });
    const double host_wait = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto o = outcomes_.find(ticket);
    if (o != outcomes_.end()) o->second.stall += host_wait;
    it = live_.find(ticket);
    if (it == live_.end()) return;
    auto wait_on = [&](Marker m) {
      if (m == 0) return;
      const uint64_t probe = memory_->ComputeWaitProbed(m);
      if (probe != 0 && o != outcomes_.end()) {
        probes_[probe] = ticket;
        ++o->second.pending;
      }
    };
    if (group < 0) {
      for (Marker m : it->second.markers) wait_on(m);
    } else if (static_cast<size_t>(group) < it->second.n_groups) {
      wait_on(it->second.markers[static_cast<size_t>(group)]);
    }
  }
  Poll();
}

Status CopyEngine::HostWait(TicketId ticket) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return live_.find(ticket) == live_.end(); });
  auto f = failed_.find(ticket);
  return f == failed_.end() ? OkStatus() : f->second;
}

bool CopyEngine::Done(TicketId ticket) const {
  std::lock_guard<std::mutex> l(mu_);
  return live_.find(ticket) == live_.end();
}

void CopyEngine::Drain() {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return live_.empty(); });
}

TransferStats CopyEngine::Stats() {
  Poll();
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

}  // namespace slim::kv
