// StreamGraphs: segments of a captured pass, each launched as a graph when it ends.
#include "engine/backend/cuda/stream_graphs.h"

#include "engine/backend/cuda/cuda_check.h"

namespace slim::cuda {

namespace {
thread_local StreamGraphs* t_current = nullptr;
}  // namespace

StreamGraphs::~StreamGraphs() {
  if (t_current == this) t_current = nullptr;
  if (capturing_) {
    cudaGraph_t g = nullptr;
    if (cudaStreamEndCapture(stream_, &g) == cudaSuccess && g != nullptr) (void)cudaGraphDestroy(g);
  }
  for (cudaGraphExec_t e : execs_)
    if (e != nullptr) (void)cudaGraphExecDestroy(e);
}

StreamGraphs* StreamGraphs::Current() { return t_current; }

Status StreamGraphs::Begin() {
  if (in_pass_) return InternalError("StreamGraphs: a captured pass is already open");
  if (t_current != nullptr) return InternalError("StreamGraphs: this thread already captures another stream");
  in_pass_ = true;
  segment_ = 0;
  error_ = OkStatus();
  t_current = this;
  return Resume();
}

Status StreamGraphs::Resume() {
  if (!in_pass_ || capturing_ || gap_depth_ > 0 || !error_.ok()) return OkStatus();
  const cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    error_ = CudaStatus(e, "cudaStreamBeginCapture", __FILE__, __LINE__);
    return error_;
  }
  capturing_ = true;
  return OkStatus();
}

Status StreamGraphs::Pause() {
  if (!capturing_) return OkStatus();
  capturing_ = false;
  cudaGraph_t g = nullptr;
  const cudaError_t e = cudaStreamEndCapture(stream_, &g);
  if (e != cudaSuccess || g == nullptr) {
    (void)cudaGetLastError();
    if (g != nullptr) (void)cudaGraphDestroy(g);
    // A call the capture could not hold invalidated it: this segment's work never ran.
    if (error_.ok()) error_ = CudaStatus(e, "cudaStreamEndCapture (a captured segment was lost)", __FILE__, __LINE__);
    return error_;
  }
  const Status s = Launch(g);
  (void)cudaGraphDestroy(g);
  if (!s.ok() && error_.ok()) error_ = s;
  return s;
}

Status StreamGraphs::Launch(cudaGraph_t graph) {
  size_t n_nodes = 0;
  CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &n_nodes));
  if (n_nodes == 0) return OkStatus();
  if (segment_ >= execs_.size()) execs_.resize(segment_ + 1, nullptr);
  cudaGraphExec_t& exec = execs_[segment_];
  if (exec != nullptr) {
    cudaGraphExecUpdateResultInfo info{};
    if (cudaGraphExecUpdate(exec, graph, &info) != cudaSuccess) {
      (void)cudaGetLastError();  // another shape than last time: instantiate this one
      (void)cudaGraphExecDestroy(exec);
      exec = nullptr;
    }
  }
  if (exec == nullptr) {
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    ++instantiations_;
  }
  CUDA_CHECK(cudaGraphLaunch(exec, stream_));
  ++segment_;
  ++segments_;
  return OkStatus();
}

Status StreamGraphs::Split() {
  if (!in_pass_ || gap_depth_ > 0) return OkStatus();
  SLIM_RETURN_IF_ERROR(Pause());
  return Resume();
}

Status StreamGraphs::End() {
  if (!in_pass_) return OkStatus();
  (void)Pause();
  in_pass_ = false;
  if (t_current == this) t_current = nullptr;
  Status s = error_;
  error_ = OkStatus();
  return s;
}

CaptureGap::CaptureGap() : g_(StreamGraphs::Current()) {
  if (g_ != nullptr && g_->gap_depth_++ == 0) (void)g_->Pause();
}

CaptureGap::~CaptureGap() {
  if (g_ != nullptr && --g_->gap_depth_ == 0) (void)g_->Resume();
}

}  // namespace slim::cuda
