// CudaTierMemory: arena, pinned chunks, copy streams, fence ring and marker events.
#include "engine/backend/cuda/cuda_tier_memory.h"

#include <chrono>
#include <cstring>
#include <thread>
#include <string>

#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/stream_graphs.h"

namespace slim::cuda {

StatusOr<std::unique_ptr<CudaTierMemory>> CudaTierMemory::Create(int device, cudaStream_t compute) {
  std::unique_ptr<CudaTierMemory> m(new CudaTierMemory());
  m->device_ = device;
  m->compute_ = compute;
  CUDA_CHECK(cudaSetDevice(device));
  for (cudaStream_t& s : m->copy_) CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  m->fences_.assign(kFenceRing, nullptr);
  for (cudaEvent_t& e : m->fences_) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return m;
}

CudaTierMemory::~CudaTierMemory() {
  (void)cudaSetDevice(device_);
  for (cudaStream_t s : copy_)
    if (s != nullptr) (void)cudaStreamSynchronize(s);
  for (cudaEvent_t e : fences_)
    if (e != nullptr) (void)cudaEventDestroy(e);
  for (auto& [id, e] : markers_) (void)cudaEventDestroy(e);
  for (cudaEvent_t e : spare_) (void)cudaEventDestroy(e);
  for (auto& [id, p] : probes_) {
    (void)cudaEventDestroy(p.before);
    (void)cudaEventDestroy(p.after);
  }
  for (cudaEvent_t e : timing_spare_) (void)cudaEventDestroy(e);
  for (cudaStream_t s : copy_)
    if (s != nullptr) (void)cudaStreamDestroy(s);
}

size_t CudaTierMemory::GpuFreeBytes() const {
  size_t free_b = 0, total = 0;
  if (cudaMemGetInfo(&free_b, &total) != cudaSuccess) return 0;
  return free_b;
}

StatusOr<void*> CudaTierMemory::AllocGpu(size_t bytes) {
  void* p = nullptr;
  CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void CudaTierMemory::FreeGpu(void* p) {
  if (p != nullptr) (void)cudaFree(p);
}

StatusOr<void*> CudaTierMemory::AllocHost(size_t bytes) {
  CUDA_CHECK(cudaSetDevice(device_));  // may run on the store's pinning thread
  void* p = nullptr;
  CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocPortable));
  return p;
}

void CudaTierMemory::FreeHost(void* p) {
  if (p != nullptr) (void)cudaFreeHost(p);
}

void CudaTierMemory::Fill(bool tier_is_gpu, void* p, size_t bytes, uint8_t byte) {
  if (tier_is_gpu) {
    CaptureGap gap;
    (void)cudaMemsetAsync(p, byte, bytes, compute_);
  } else {
    std::memset(p, byte, bytes);
  }
}

kv::Fence CudaTierMemory::RecordCompute() {
  const kv::Fence f = ++next_fence_;
  // Copy streams wait on fences and markers on the compute stream: they are recorded and waited
  // on outside any capture of it (stream_graphs.h), after the work captured so far is launched.
  CaptureGap gap;
  (void)cudaEventRecord(fences_[f % kFenceRing], compute_);
  return f;
}

cudaEvent_t CudaTierMemory::MarkerEvent(kv::Marker m) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = markers_.find(m);
  return it == markers_.end() ? nullptr : it->second;
}

void CudaTierMemory::ComputeWait(kv::Marker m) {
  CaptureGap gap;
  if (cudaEvent_t e = MarkerEvent(m)) (void)cudaStreamWaitEvent(compute_, e, 0);
}

cudaEvent_t CudaTierMemory::TimingEvent() {
  if (!timing_spare_.empty()) {
    cudaEvent_t e = timing_spare_.back();
    timing_spare_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  return cudaEventCreate(&e) == cudaSuccess ? e : nullptr;
}

uint64_t CudaTierMemory::ComputeWaitProbed(kv::Marker m) {
  // Outside a capture whether or not it waits, so that a recorded pass splits at the same
  // points step after step (its graphs are then updated in place, not instantiated anew).
  CaptureGap gap;
  cudaEvent_t e = MarkerEvent(m);
  if (e == nullptr) return 0;
  // A copy already done cannot hold compute up: no wait, nothing to measure.
  if (cudaEventQuery(e) == cudaSuccess) return 0;
  std::lock_guard<std::mutex> l(mu_);
  Probe p{TimingEvent(), TimingEvent()};
  if (p.before == nullptr || p.after == nullptr) {
    for (cudaEvent_t x : {p.before, p.after})
      if (x != nullptr) timing_spare_.push_back(x);
    (void)cudaStreamWaitEvent(compute_, e, 0);
    return 0;
  }
  (void)cudaEventRecord(p.before, compute_);
  (void)cudaStreamWaitEvent(compute_, e, 0);
  (void)cudaEventRecord(p.after, compute_);
  probes_[++next_probe_] = p;
  return next_probe_;
}

void CudaTierMemory::PollProbes(std::vector<ProbeResult>* done) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = probes_.begin(); it != probes_.end();) {
    const cudaError_t r = cudaEventQuery(it->second.after);
    if (r == cudaErrorNotReady) {
      ++it;
      continue;
    }
    float ms = 0.0f;
    if (r == cudaSuccess) (void)cudaEventElapsedTime(&ms, it->second.before, it->second.after);
    done->push_back(ProbeResult{it->first, ms / 1e3});
    timing_spare_.push_back(it->second.before);
    timing_spare_.push_back(it->second.after);
    it = probes_.erase(it);
  }
}

StatusOr<kv::Marker> CudaTierMemory::Mark(kv::CopyDir dir) {
  CUDA_CHECK(cudaSetDevice(device_));
  cudaEvent_t e = nullptr;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!spare_.empty()) {
      e = spare_.back();
      spare_.pop_back();
    }
  }
  if (e == nullptr) CUDA_CHECK(cudaEventCreate(&e));
  const cudaError_t r = cudaEventRecord(e, copy_[static_cast<int>(dir)]);
  std::lock_guard<std::mutex> l(mu_);
  if (r != cudaSuccess) {
    spare_.push_back(e);
    return CudaStatus(r, "cudaEventRecord(copy marker)", __FILE__, __LINE__);
  }
  markers_[++next_marker_] = e;
  return next_marker_;
}

StatusOr<kv::Marker> CudaTierMemory::CopyBatch(kv::CopyDir dir, kv::Fence after, std::span<const kv::CopyRange> ranges) {
  CUDA_CHECK(cudaSetDevice(device_));
  cudaStream_t s = copy_[static_cast<int>(dir)];
  if (after != 0) CUDA_CHECK(cudaStreamWaitEvent(s, fences_[after % kFenceRing], 0));
  if (!ranges.empty()) {
    std::vector<void*> dsts(ranges.size());
    std::vector<const void*> srcs(ranges.size());
    std::vector<size_t> sizes(ranges.size());
    for (size_t i = 0; i < ranges.size(); ++i) {
      dsts[i] = ranges[i].dst;
      srcs[i] = ranges[i].src;
      sizes[i] = ranges[i].bytes;
    }
    cudaMemcpyAttributes attr{};
    attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
    attr.flags = cudaMemcpyFlagPreferOverlapWithCompute;
    size_t attr_idx = 0;
    CUDA_CHECK(cudaMemcpyBatchAsync(dsts.data(), srcs.data(), sizes.data(), ranges.size(), &attr, &attr_idx, 1, s));
  }
  return Mark(dir);
}

Status CudaTierMemory::HostWait(kv::Marker m) {
  cudaEvent_t e = MarkerEvent(m);
  if (e == nullptr) return OkStatus();
  // Polled with short sleeps rather than cudaEventSynchronize, which spins a core inside the
  // driver for the whole copy beside the engine thread's launches; only the copy worker waits
  // here, and seeing a completion up to one sleep late delays no compute.
  for (;;) {
    const cudaError_t r = cudaEventQuery(e);
    if (r == cudaSuccess) return OkStatus();
    if (r != cudaErrorNotReady) return CudaStatus(r, "cudaEventQuery(copy marker)", __FILE__, __LINE__);
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

double CudaTierMemory::Elapsed(kv::Marker from, kv::Marker to) {
  cudaEvent_t a = MarkerEvent(from), b = MarkerEvent(to);
  float ms = 0.0f;
  if (a == nullptr || b == nullptr || cudaEventElapsedTime(&ms, a, b) != cudaSuccess) return 0.0;
  return ms / 1e3;
}

void CudaTierMemory::ReleaseMarker(kv::Marker m) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = markers_.find(m);
  if (it == markers_.end()) return;
  spare_.push_back(it->second);
  markers_.erase(it);
}

StatusOr<std::unique_ptr<kv::TierMemory>> CudaBackend::CreateKvMemory() {
  SLIM_ASSIGN_OR_RETURN(std::unique_ptr<CudaTierMemory> m, CudaTierMemory::Create(device_, stream_));
  return std::unique_ptr<kv::TierMemory>(std::move(m));
}

}  // namespace slim::cuda
