// Small copies between device memory and mapped (pinned) host memory done by a kernel on the
// compute stream instead of a copy engine. The compute stream's own small transfers (staged
// index arrays, logits summaries) would otherwise queue on the copy engines behind the KV
// store's bulk transfers and stall every decode step while they run (bench/kv-store.md).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "engine/core/status.h"

namespace slim::cuda {

// dst[0, bytes) = src[0, bytes); either side may be pinned host memory (dereferenced through
// unified addressing). Both pointers 16-byte aligned. Meant for a few KB to a few MB.
Status LaunchMappedCopy(const void* src, void* dst, size_t bytes, cudaStream_t stream);

}  // namespace slim::cuda
