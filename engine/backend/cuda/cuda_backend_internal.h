// Shared by the CudaBackend source files (cuda_backend.cpp: lifecycle, memory, element-wise ops
// and GEMMs; cuda_attention.cpp: KV writes, attention and pruning scores): the profiling scope
// of one op, the stager's cache slots and small constants. Not for use outside the backend.
#pragma once

#include <cstddef>
#include <string>

#include "engine/backend/cuda/cuda_backend.h"

namespace slim::cuda {
inline constexpr size_t kCublasWorkspace = size_t{32} << 20;  // cuBLAS's recommendation for Hopper
inline constexpr size_t kStagerBytes = size_t{16} << 20;
inline constexpr int kDecodeMaxRows = 8;  // sequences with more new rows take the flash kernel
// Stager cache slots.
enum Slot : int { kSlotIds = 0, kSlotRope, kSlotAttn, kSlotGather };

inline std::string Shape(const TensorView& t) { return std::to_string(t.rows) + "x" + std::to_string(t.cols); }

// Records one op's begin and end events on the compute stream when profiling is on.
class CudaBackend::OpScope {
 public:
  OpScope(CudaBackend* b, const char* op, const std::string& detail = {}) : b_(b) {
    if (!b_->profiling_) return;
    pending_.op = detail.empty() ? std::string(op) : std::string(op) + "[" + detail + "]";
    pending_.begin = b_->NewEvent();
    pending_.end = b_->NewEvent();
    if (pending_.begin != nullptr) (void)cudaEventRecord(pending_.begin, b_->stream_);
  }
  ~OpScope() {
    if (!b_->profiling_ || pending_.begin == nullptr || pending_.end == nullptr) return;
    (void)cudaEventRecord(pending_.end, b_->stream_);
    b_->pending_.push_back(pending_);
  }

 private:
  CudaBackend* b_;
  Pending pending_{};
};

}  // namespace slim::cuda
