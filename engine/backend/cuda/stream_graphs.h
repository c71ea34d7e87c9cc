// Replays a pass's launches on the compute stream as CUDA graphs. Between Begin and End the
// stream is captured into segments; each segment is launched as one graph when it ends, so the
// stream runs exactly what it would have run uncaptured, in the same order. A segment ends at
// a Split (the model's layer boundaries, so the device starts early), at End, and wherever the
// engine thread must do something a capture cannot hold (a host wait, an allocation, an event
// other streams or the host wait on): that code opens a CaptureGap first.
//
// Why: decode launches about 250 short kernels per token, and while the copy engines read host
// memory for KV transfers every launch from the host took a few microseconds longer
// (bench/kv-store.md); a graph's launches come from device memory. Each segment's executable
// graph is kept by its index in the pass and updated in place (cudaGraphExecUpdate) when the
// next pass's segment has the same shape, instantiated anew otherwise.
//
// Thread-safety: one thread (the engine thread); captures are thread-local, so the KV store's
// copy threads keep using their own streams meanwhile.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "engine/core/status.h"

namespace slim::cuda {

class StreamGraphs {
 public:
  StreamGraphs() = default;
  ~StreamGraphs();
  StreamGraphs(const StreamGraphs&) = delete;
  StreamGraphs& operator=(const StreamGraphs&) = delete;

  void Init(cudaStream_t stream) { stream_ = stream; }
  // Starts a captured pass (an error when one is open).
  Status Begin();
  // Ends the current segment (launching it) and starts the next.
  Status Split();
  // Ends the pass: the last segment is launched. The first failure of the pass's captures,
  // instantiations or launches, if any (the work of a failed segment did not run).
  Status End();
  bool in_pass() const { return in_pass_; }

  // Segments and graph instantiations since creation (updates in place are not counted).
  int64_t segments() const { return segments_; }
  int64_t instantiations() const { return instantiations_; }

  // The calling thread's open pass, if any (what a CaptureGap pauses).
  static StreamGraphs* Current();

 private:
  friend class CaptureGap;
  // Ends the current segment and launches it; capturing stays off until Resume.
  Status Pause();
  Status Resume();
  Status Launch(cudaGraph_t graph);

  cudaStream_t stream_ = nullptr;
  bool in_pass_ = false;
  bool capturing_ = false;
  int gap_depth_ = 0;
  size_t segment_ = 0;  // index of the current segment in the pass
  std::vector<cudaGraphExec_t> execs_;
  Status error_;
  int64_t segments_ = 0, instantiations_ = 0;
};

// Within its scope the calling thread's capture (if any) is paused: work queued so far has been
// launched, and calls that synchronize or allocate are safe. Nests.
class CaptureGap {
 public:
  CaptureGap();
  ~CaptureGap();
  CaptureGap(const CaptureGap&) = delete;
  CaptureGap& operator=(const CaptureGap&) = delete;

 private:
  StreamGraphs* g_;
};

}  // namespace slim::cuda
