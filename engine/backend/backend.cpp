// Backend factory: CPU always, CUDA when compiled in.
#include "engine/backend/backend.h"

namespace slim {

namespace cpu { StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const BackendOptions& options); }
#ifdef SLIM_HAVE_CUDA
namespace cuda { StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const BackendOptions& options); }
#endif

StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options) {
  if (options.device == Device::kCpu) return cpu::CreateCpuBackend(options);
#ifdef SLIM_HAVE_CUDA
  return cuda::CreateCudaBackend(options);
#else
  return UnavailableError("this build has no CUDA backend (configure with SLIM_WITH_CUDA=ON)");
#endif
}

Status Backend::SummarizeLogits(TensorView logits, std::span<const SummaryRequest> requests,
                                std::vector<LogitsSummary>* out) {
  std::vector<float> host(static_cast<size_t>(logits.rows * logits.cols));
  SLIM_RETURN_IF_ERROR(Download(logits, host.data()));
  SummaryScratch scratch;
  return SummarizeRows(host.data(), logits.rows, logits.cols, logits.cols, requests, &scratch, out);
}

}  // namespace slim
