// HostStager: pinned ring + device ring, copied by a kernel; wrap = wait for the stream.
#include "engine/backend/cuda/host_stager.h"

#include <algorithm>
#include <cstring>

#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/mapped_copy.h"
#include "engine/backend/cuda/stream_graphs.h"

namespace slim::cuda {

namespace {
constexpr size_t kAlign = 256;
size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

DeviceScratch::~DeviceScratch() {
  if (data_ != nullptr) (void)cudaFree(data_);
}

StatusOr<void*> DeviceScratch::Get(size_t bytes) {
  if (bytes <= bytes_ && data_ != nullptr) return data_;
  CaptureGap gap;  // freeing and allocating cannot be captured
  if (data_ != nullptr) {
    CUDA_CHECK(cudaFree(data_));  // synchronizes: nothing still reads the old buffer
    data_ = nullptr;
    bytes_ = 0;
  }
  const size_t n = std::max<size_t>(bytes + bytes / 4, 256);
  CUDA_CHECK(cudaMalloc(&data_, n));
  bytes_ = n;
  return data_;
}

PinnedBuffer::~PinnedBuffer() {
  if (data_ != nullptr) (void)cudaFreeHost(data_);
}

StatusOr<uint8_t*> PinnedBuffer::Get(size_t bytes) {
  if (bytes <= bytes_ && data_ != nullptr) return data_;
  CaptureGap gap;
  if (data_ != nullptr) {
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaFreeHost(data_));
    data_ = nullptr;
    bytes_ = 0;
  }
  const size_t n = std::max<size_t>(bytes + bytes / 4, 4096);
  CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&data_), n));
  bytes_ = n;
  return data_;
}

HostStager::~HostStager() { Release(); }

void HostStager::Release() {
  if (host_ != nullptr) (void)cudaFreeHost(host_);
  if (device_ != nullptr) (void)cudaFree(device_);
  host_ = nullptr;
  device_ = nullptr;
  capacity_ = 0;
}

Status HostStager::Init(size_t capacity, cudaStream_t stream) {
  Release();
  stream_ = stream;
  capacity_ = AlignUp(std::max<size_t>(capacity, kAlign));
  CUDA_CHECK(cudaMallocHost(&host_, capacity_));
  CUDA_CHECK(cudaMalloc(&device_, capacity_));
  head_ = 0;
  ++lap_;
  return OkStatus();
}

Status HostStager::Reserve(size_t bytes, size_t* offset) {
  const size_t need = AlignUp(std::max<size_t>(bytes, 1));
  if (need > capacity_ / 4 || head_ + need > capacity_) {
    // Waiting for the stream is outside any capture: what was captured so far is launched first.
    CaptureGap gap;
    SLIM_RETURN_IF_ERROR(Wrap(need));
  }
  *offset = head_;
  head_ += need;
  return OkStatus();
}

Status HostStager::Wrap(size_t need) {
  if (need > capacity_ / 4) {
    // Grow: everything staged so far must have been consumed first.
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    SLIM_RETURN_IF_ERROR(Init(std::max(capacity_ * 2, need * 4), stream_));
  } else if (head_ + need > capacity_) {
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    head_ = 0;
    ++lap_;
  }
  return OkStatus();
}

StatusOr<const void*> HostStager::Stage(const void* data, size_t bytes) {
  size_t off = 0;
  SLIM_RETURN_IF_ERROR(Reserve(bytes, &off));
  if (bytes > 0) {
    std::memcpy(host_ + off, data, bytes);
    SLIM_RETURN_IF_ERROR(LaunchMappedCopy(host_ + off, device_ + off, bytes, stream_));
  }
  return static_cast<const void*>(device_ + off);
}

StatusOr<const void*> HostStager::StageCached(int slot, const void* data, size_t bytes) {
  if (slot < 0) return InvalidArgumentError("HostStager: negative cache slot");
  if (static_cast<size_t>(slot) >= cache_.size()) cache_.resize(static_cast<size_t>(slot) + 1);
  Cached& c = cache_[static_cast<size_t>(slot)];
  if (c.lap == lap_ && c.bytes.size() == bytes && (bytes == 0 || std::memcmp(c.bytes.data(), data, bytes) == 0)) {
    return c.device;
  }
  SLIM_ASSIGN_OR_RETURN(const void* dev, Stage(data, bytes));
  c.bytes.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + bytes);
  c.device = dev;
  c.lap = lap_;  // Stage may have wrapped: the copy belongs to the current lap
  return dev;
}

}  // namespace slim::cuda
