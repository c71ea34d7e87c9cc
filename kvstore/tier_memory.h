// The memory and copy primitives the KV store runs on, implemented by each backend: the gpu
// tier's arena, the host tier's (pinned) memory, one copy stream per direction, and markers
// (events) that order copies against the compute stream. The store owns every KV byte through
// this interface; CUDA types never reach its headers. kvstore/host_tier_memory.h is the CPU
// implementation (both tiers host memory, copies are memcpy); engine/backend/cuda has the GPU one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/core/status.h"

namespace slim::kv {

enum class CopyDir { kH2D = 0, kD2H = 1 };  // host tier -> gpu tier, gpu tier -> host tier
inline const char* CopyDirName(CopyDir d) { return d == CopyDir::kH2D ? "h2d" : "d2h"; }

struct CopyRange {
  void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;
};

// A point in the compute stream's order (after the KV writes and attention reads queued so
// far); 0 = none. Fences only grow.
using Fence = uint64_t;
// A point in one copy stream's order, returned by Mark / CopyBatch; 0 = none.
using Marker = uint64_t;

// Thread-safety: RecordCompute and ComputeWait are called by the engine thread (the one that
// queues compute); Mark, CopyBatch, HostWait and Elapsed by the copy worker of that direction
// (one thread per direction); Alloc*/Free* and Fill from any one thread at a time; ReleaseMarker
// by either worker. Implementations serialise their own marker tables.
class TierMemory {
 public:
  virtual ~TierMemory() = default;
  // "cpu" or "cuda"; for messages.
  virtual const char* Name() const = 0;

  // Bytes the gpu tier could still take (device memory free now; on the CPU, available RAM).
  virtual size_t GpuFreeBytes() const = 0;
  // The gpu tier: one arena (the kernels address blocks from its base).
  virtual StatusOr<void*> AllocGpu(size_t bytes) = 0;
  virtual void FreeGpu(void* p) = 0;
  // Host tier memory, page-locked where copies need it (CUDA). May take long (pinning measured
  // about 0.5 s per GiB): the store calls it off the serving path, in chunks.
  virtual StatusOr<void*> AllocHost(size_t bytes) = 0;
  virtual void FreeHost(void* p) = 0;
  // Sets `bytes` at p (in `tier_is_gpu` memory) to `byte`, ordered after queued compute.
  virtual void Fill(bool tier_is_gpu, void* p, size_t bytes, uint8_t byte) = 0;

  // A fence after everything queued on the compute stream so far.
  virtual Fence RecordCompute() = 0;
  // Makes later compute wait (device-side, no host sync) until `m` of a copy stream is done.
  virtual void ComputeWait(Marker m) = 0;
  // ComputeWait that also measures how long the compute stream stands still on it (CUDA: timing
  // events recorded just before and after the wait). Returns a probe id (0: nothing to measure,
  // the copy can no longer hold compute up); PollProbes hands back the stall of each probe the
  // compute stream has passed. Engine thread; PollProbes from any thread.
  virtual uint64_t ComputeWaitProbed(Marker m) {
    ComputeWait(m);
    return 0;
  }
  struct ProbeResult {
    uint64_t probe = 0;
    double stall_seconds = 0.0;
  };
  virtual void PollProbes(std::vector<ProbeResult>* done) { (void)done; }

  // A marker at the current end of `dir`'s copy stream.
  virtual StatusOr<Marker> Mark(CopyDir dir) = 0;
  // Queues, on `dir`'s copy stream, a wait for compute fence `after` (0: none) and then `ranges`
  // as one batched copy; returns the marker after it. CPU: copies before returning.
  virtual StatusOr<Marker> CopyBatch(CopyDir dir, Fence after, std::span<const CopyRange> ranges) = 0;
  // Blocks the calling thread until `m` is done.
  virtual Status HostWait(Marker m) = 0;
  // Seconds between two done markers of one stream.
  virtual double Elapsed(Marker from, Marker to) = 0;
  virtual void ReleaseMarker(Marker m) = 0;
};

}  // namespace slim::kv
