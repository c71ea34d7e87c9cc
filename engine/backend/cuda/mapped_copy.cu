// Kernel: 16 bytes per thread, grid-stride, the last < 16 bytes one per thread; launcher below.
#include "engine/backend/cuda/mapped_copy.h"

#include <algorithm>
#include <cstdint>

#include "engine/backend/cuda/cuda_check.h"

namespace slim::cuda {
namespace {

__global__ void MappedCopyKernel(const uint4* __restrict__ src, uint4* __restrict__ dst, size_t n16, size_t tail) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n16; i += size_t{gridDim.x} * blockDim.x) {
    dst[i] = src[i];
  }
  if (blockIdx.x == 0 && threadIdx.x < tail) {
    reinterpret_cast<uint8_t*>(dst + n16)[threadIdx.x] = reinterpret_cast<const uint8_t*>(src + n16)[threadIdx.x];
  }
}

}  // namespace

Status LaunchMappedCopy(const void* src, void* dst, size_t bytes, cudaStream_t stream) {
  SLIM_GPU_REQUIRE(reinterpret_cast<uintptr_t>(src) % 16 == 0 && reinterpret_cast<uintptr_t>(dst) % 16 == 0,
                   "MappedCopy");
  if (bytes == 0) return OkStatus();
  const size_t n16 = bytes / 16;
  const int threads = 256;
  const int blocks = static_cast<int>(std::max<size_t>(1, std::min<size_t>((n16 + threads - 1) / threads, 128)));
  MappedCopyKernel<<<blocks, threads, 0, stream>>>(static_cast<const uint4*>(src), static_cast<uint4*>(dst), n16,
                                                   bytes % 16);
  CUDA_CHECK_LAUNCH("MappedCopy");
  return OkStatus();
}

}  // namespace slim::cuda
