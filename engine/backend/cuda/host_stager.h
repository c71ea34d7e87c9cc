// Stages small host arrays (token ids, positions, block tables, tile lists) into device memory
// on the compute stream without a host-device synchronization per op; and the grow-on-demand
// device and pinned buffers the backend's ops use as scratch.
//
// Contract: bytes are copied into a pinned host ring and moved by a copy kernel on the stream
// (mapped_copy.h: no copy engine, so bulk KV transfers never delay it) into the same offset of a
// device ring; the returned device pointer is valid for work enqueued on the
// stream until the ring wraps. A wrap waits for the stream (the pinned bytes of the previous lap
// may still be in flight) and forgets the cached copies; kernels of the previous lap finished
// reading the device ring before the next lap's copies land, by stream order.
// Thread-safety: none; owned and used by the engine thread through CudaBackend.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/core/status.h"

namespace slim::cuda {

// A device allocation that grows on demand (contents not kept).
class DeviceScratch {
 public:
  ~DeviceScratch();
  StatusOr<void*> Get(size_t bytes);

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Pinned host memory that grows on demand (contents not kept), which kernels may write.
// Growing synchronizes the device first (a kernel may still write the old buffer).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  StatusOr<uint8_t*> Get(size_t bytes);

 private:
  uint8_t* data_ = nullptr;
  size_t bytes_ = 0;
};

class HostStager {
 public:
  HostStager() = default;
  ~HostStager();
  HostStager(const HostStager&) = delete;
  HostStager& operator=(const HostStager&) = delete;

  Status Init(size_t capacity, cudaStream_t stream);
  // Device copy of [data, data + bytes).
  StatusOr<const void*> Stage(const void* data, size_t bytes);
  // As Stage, but returns the copy staged under `slot` last time when the bytes are equal.
  StatusOr<const void*> StageCached(int slot, const void* data, size_t bytes);
  // Staged pointers stay valid while this is unchanged (it advances when the ring wraps).
  uint64_t lap() const { return lap_; }

 private:
  Status Reserve(size_t bytes, size_t* offset);
  // Grows the rings for `need` bytes or starts the next lap, waiting for the stream.
  Status Wrap(size_t need);
  void Release();

  cudaStream_t stream_ = nullptr;
  uint8_t* host_ = nullptr;    // pinned
  uint8_t* device_ = nullptr;
  size_t capacity_ = 0;
  size_t head_ = 0;
  struct Cached {
    std::vector<uint8_t> bytes;
    const void* device = nullptr;
    uint64_t lap = 0;
  };
  std::vector<Cached> cache_;
  uint64_t lap_ = 1;
};

}  // namespace slim::cuda
