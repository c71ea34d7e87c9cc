// The KV store's TierMemory on CUDA: the gpu tier is one cudaMalloc arena, the host tier
// page-locked memory (cudaHostAlloc), one non-blocking copy stream per direction, compute fences
// as a ring of events recorded on the backend's compute stream, and copy markers as timing
// events. Copies of one batch go out as one cudaMemcpyBatchAsync (DMA engines, no SM kernels,
// so a concurrent compute kernel loses almost nothing).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "kvstore/tier_memory.h"

namespace slim::cuda {

// Thread-safety: as kv::TierMemory; the marker table has its own mutex.
class CudaTierMemory final : public kv::TierMemory {
 public:
  static StatusOr<std::unique_ptr<CudaTierMemory>> Create(int device, cudaStream_t compute);
  ~CudaTierMemory() override;

  const char* Name() const override { return "cuda"; }
  size_t GpuFreeBytes() const override;
  StatusOr<void*> AllocGpu(size_t bytes) override;
  void FreeGpu(void* p) override;
  StatusOr<void*> AllocHost(size_t bytes) override;
  void FreeHost(void* p) override;
  void Fill(bool tier_is_gpu, void* p, size_t bytes, uint8_t byte) override;
  kv::Fence RecordCompute() override;
  void ComputeWait(kv::Marker m) override;
  uint64_t ComputeWaitProbed(kv::Marker m) override;
  void PollProbes(std::vector<ProbeResult>* done) override;
  StatusOr<kv::Marker> Mark(kv::CopyDir dir) override;
  StatusOr<kv::Marker> CopyBatch(kv::CopyDir dir, kv::Fence after, std::span<const kv::CopyRange> ranges) override;
  Status HostWait(kv::Marker m) override;
  double Elapsed(kv::Marker from, kv::Marker to) override;
  void ReleaseMarker(kv::Marker m) override;

 private:
  // Fences older than the ring's size wait on a newer recording of their slot: later in the
  // compute stream, so waiting on it is stronger than needed, never weaker.
  static constexpr size_t kFenceRing = 256;
  CudaTierMemory() = default;
  cudaEvent_t MarkerEvent(kv::Marker m);

  int device_ = 0;
  cudaStream_t compute_ = nullptr;
  cudaStream_t copy_[2] = {nullptr, nullptr};
  std::vector<cudaEvent_t> fences_;  // [kFenceRing], engine thread
  kv::Fence next_fence_ = 0;
  std::mutex mu_;
  kv::Marker next_marker_ = 0;
  std::unordered_map<kv::Marker, cudaEvent_t> markers_;  // guarded by mu_
  std::vector<cudaEvent_t> spare_;                       // guarded by mu_
  // Timing events around a probed compute wait.
  struct Probe {
    cudaEvent_t before = nullptr, after = nullptr;
  };
  uint64_t next_probe_ = 0;                      // guarded by mu_
  std::unordered_map<uint64_t, Probe> probes_;   // guarded by mu_
  std::vector<cudaEvent_t> timing_spare_;        // guarded by mu_
  cudaEvent_t TimingEvent();                     // mu_ held
};

}  // namespace slim::cuda
