// HostTierMemory: aligned host allocations and memcpy copies.
#include "kvstore/host_tier_memory.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace slim::kv {

size_t HostTierMemory::GpuFreeBytes() const {
  const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
}

StatusOr<void*> HostTierMemory::AllocHost(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = rounded == 0 ? nullptr : std::aligned_alloc(64, rounded);
  if (p == nullptr) {
    return ResourceExhaustedError("KV store: cannot allocate " + std::to_string(bytes) + " bytes of host memory");
  }
  return p;
}

void HostTierMemory::FreeHost(void* p) { std::free(p); }

void HostTierMemory::Fill(bool, void* p, size_t bytes, uint8_t byte) { std::memset(p, byte, bytes); }

Marker HostTierMemory::Stamp() {
  std::lock_guard<std::mutex> l(mu_);
  times_[++next_] = std::chrono::steady_clock::now();
  return next_;
}

StatusOr<Marker> HostTierMemory::Mark(CopyDir) { return Stamp(); }

StatusOr<Marker> HostTierMemory::CopyBatch(CopyDir, Fence, std::span<const CopyRange> ranges) {
  for (const CopyRange& r : ranges) std::memcpy(r.dst, r.src, r.bytes);
  return Stamp();
}

double HostTierMemory::Elapsed(Marker from, Marker to) {
  std::lock_guard<std::mutex> l(mu_);
  auto a = times_.find(from), b = times_.find(to);
  if (a == times_.end() || b == times_.end()) return 0.0;
  return std::chrono::duration<double>(b->second - a->second).count();
}

void HostTierMemory::ReleaseMarker(Marker m) {
  std::lock_guard<std::mutex> l(mu_);
  times_.erase(m);
}

}  // namespace slim::kv
