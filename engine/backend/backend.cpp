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

}  // namespace slim
