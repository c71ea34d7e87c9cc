// The KV store's copy engine: one worker thread per direction (host-to-device, device-to-host)
// runs copy jobs in submission order over TierMemory's copy streams. A job is a list of groups
// (one per layer), each sent as one batched copy with a marker after it, so compute can wait
// for one layer's data while later layers are still in flight.
//
// Who waits on what:
//  * a job's first batch waits (on the device) for the compute fence it names: an offload for
//    the KV writes of its blocks, a prefetch for the last attention reads of its reused slots;
//  * a job that reuses slots another direction's job still touches first waits (on its worker's
//    host thread) for that ticket to finish;
//  * compute waits (device-side, ComputeWait) for a ticket's group before using its slots;
//  * the worker waits (host) for its own job's last marker, then reports the ticket done and
//    calls the completion callback (the store updates block states there).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/core/status.h"
#include "kvstore/block_pool.h"
#include "kvstore/tier_memory.h"

namespace slim::kv {

// A cumulative histogram as plain numbers: counts[i] observations <= bounds[i], counts.back()
// all of them (the +Inf bucket).
struct HistogramData {
  std::vector<double> bounds;
  std::vector<int64_t> counts;  // cumulative, bounds.size() + 1
  double sum = 0.0;
  void Observe(double v);
  static HistogramData WithBounds(std::vector<double> bounds);
};

struct TransferStats {
  int64_t bytes[2] = {0, 0};       // by CopyDir
  double seconds[2] = {0.0, 0.0};  // copy-stream time by CopyDir (events on CUDA)
  int64_t jobs[2] = {0, 0};
  int64_t failed_jobs = 0;
  HistogramData batch_bytes;       // bytes per batched copy
  // Per host-to-device ticket, once it landed and every compute wait on it was measured: the
  // seconds compute stood still waiting for it (CPU: the engine thread's wait for the worker;
  // CUDA: timing events around the compute stream's wait, plus any host wait for the worker).
  HistogramData prefetch_wait;
  int64_t prefetch_on_time = 0;    // h2d tickets compute waited on for at most kLateSeconds in all
  int64_t prefetch_late = 0;       // the others
  double prefetch_stall_seconds = 0.0;  // sum of prefetch_wait
};

// A prefetch that held compute up longer than this in all counts as late (event timestamps
// around a wait that was already satisfied differ by a few microseconds).
inline constexpr double kLateSeconds = 2e-5;

struct CopyJob {
  CopyDir dir = CopyDir::kH2D;
  Fence after = 0;               // compute fence to wait for (device side)
  TicketId after_ticket = 0;     // another direction's ticket to finish first (0: none)
  std::vector<std::vector<CopyRange>> groups;  // one batched copy each
  // The order the groups are issued in (a permutation of their indices), most urgent first;
  // empty: index order.
  std::vector<size_t> order;
};

// Thread-safety: every public method may be called from any thread; the completion callback
// runs on a worker thread with no lock of this class held.
class CopyEngine {
 public:
  using DoneCallback = std::function<void(TicketId, const Status&)>;
  CopyEngine(TierMemory* memory, DoneCallback on_done);
  ~CopyEngine();  // finishes queued jobs, then stops the workers
  CopyEngine(const CopyEngine&) = delete;
  CopyEngine& operator=(const CopyEngine&) = delete;

  TicketId Submit(CopyJob job);
  // Compute waits (device-side) for group `group` of `ticket` (every group when group < 0).
  // Returns at once for finished or unknown tickets.
  void ComputeWait(TicketId ticket, int group);
  // Blocks until the ticket is done; its status (OK for unknown = long finished tickets).
  Status HostWait(TicketId ticket);
  bool Done(TicketId ticket) const;
  // Waits until every submitted job is done.
  void Drain();
  TransferStats Stats();  // also collects finished probes

 private:
  struct Ticket {
    CopyDir dir;
    size_t n_groups = 0;
    std::vector<Marker> markers;   // by group, valid where `queued`
    std::vector<bool> empty;       // by group: nothing to copy (compute need not wait for it)
    std::vector<bool> queued;      // by group: queued (CPU: copied); a ticket is done once erased
    size_t n_queued = 0;
  };
  // An h2d ticket's compute stalls until it is counted: done (landed) and no probe pending.
  struct Outcome {
    double stall = 0.0;
    int pending = 0;
    bool done = false;
  };
  void Worker(CopyDir dir);
  Status Run(TicketId id, const CopyJob& job);
  // Collects finished probes from the memory and counts tickets whose outcome is complete.
  void Poll();
  void CountIfComplete(TicketId id);  // mu_ held
  TierMemory* memory_;
  DoneCallback on_done_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  TicketId next_ = 0;
  std::map<TicketId, Ticket> live_;
  std::deque<std::pair<TicketId, CopyJob>> queue_[2];
  std::map<TicketId, Status> failed_;  // failed tickets, kept for HostWait
  std::map<TicketId, Outcome> outcomes_;  // h2d tickets not counted yet
  std::map<uint64_t, TicketId> probes_;   // probe id -> its ticket
  TransferStats stats_;
  std::thread workers_[2];
};

}  // namespace slim::kv
