// TierMemory over host memory only (the CPU backend): both tiers are aligned host allocations,
// compute is synchronous on the engine thread (so every fence is already passed), and a copy is
// a memcpy done by the calling copy worker. Markers carry wall-clock times for Elapsed.
#pragma once

#include <chrono>
#include <mutex>
#include <unordered_map>

#include "kvstore/tier_memory.h"

namespace slim::kv {

// Thread-safety: as TierMemory; the marker table has its own mutex.
class HostTierMemory final : public TierMemory {
 public:
  const char* Name() const override { return "cpu"; }
  size_t GpuFreeBytes() const override;
  StatusOr<void*> AllocGpu(size_t bytes) override { return AllocHost(bytes); }
  void FreeGpu(void* p) override { FreeHost(p); }
  StatusOr<void*> AllocHost(size_t bytes) override;
  void FreeHost(void* p) override;
  void Fill(bool tier_is_gpu, void* p, size_t bytes, uint8_t byte) override;
  Fence RecordCompute() override { return ++fence_; }
  void ComputeWait(Marker) override {}
  StatusOr<Marker> Mark(CopyDir dir) override;
  StatusOr<Marker> CopyBatch(CopyDir dir, Fence after, std::span<const CopyRange> ranges) override;
  Status HostWait(Marker) override { return OkStatus(); }
  double Elapsed(Marker from, Marker to) override;
  void ReleaseMarker(Marker m) override;

 private:
  Marker Stamp();
  Fence fence_ = 0;  // engine thread only
  std::mutex mu_;
  Marker next_ = 0;
  std::unordered_map<Marker, std::chrono::steady_clock::time_point> times_;
};

}  // namespace slim::kv
