// The CUDA backend's one check-macro family: CUDA_CHECK and CUBLAS_CHECK on one generic form,
// each returning a slim::Status from the enclosing function (never exit or abort), and
// CUDA_CHECK_LAUNCH for the error state right after a kernel launch.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "engine/core/status.h"

namespace slim::cuda {

inline Status CudaStatus(cudaError_t e, const char* what, const char* file, int line) {
  if (e == cudaSuccess) return OkStatus();
  const StatusCode code = e == cudaErrorMemoryAllocation ? StatusCode::kResourceExhausted
                          : e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver
                              ? StatusCode::kUnavailable
                              : StatusCode::kInternal;
  return Status(code, std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") at " +
                          file + ":" + std::to_string(line));
}

inline Status CublasStatus(cublasStatus_t e, const char* what, const char* file, int line) {
  if (e == CUBLAS_STATUS_SUCCESS) return OkStatus();
  const StatusCode code = e == CUBLAS_STATUS_ALLOC_FAILED ? StatusCode::kResourceExhausted : StatusCode::kInternal;
  return Status(code, std::string(what) + ": " + cublasGetStatusName(e) + " (" + cublasGetStatusString(e) +
                          ") at " + file + ":" + std::to_string(line));
}

}  // namespace slim::cuda

// The generic form: `to_status` turns the call's result into a Status; non-OK returns.
#define SLIM_GPU_CHECK_(to_status, expr)                                          \
  do {                                                                            \
    ::slim::Status slim_gpu_status_ = to_status((expr), #expr, __FILE__, __LINE__); \
    if (!slim_gpu_status_.ok()) return slim_gpu_status_;                          \
  } while (0)

#define CUDA_CHECK(expr) SLIM_GPU_CHECK_(::slim::cuda::CudaStatus, expr)
#define CUBLAS_CHECK(expr) SLIM_GPU_CHECK_(::slim::cuda::CublasStatus, expr)
// After a <<<...>>> launch: configuration errors and earlier asynchronous faults.
#define CUDA_CHECK_LAUNCH(name)                                                              \
  do {                                                                                       \
    ::slim::Status slim_gpu_status_ = ::slim::cuda::CudaStatus(cudaGetLastError(), name, __FILE__, __LINE__); \
    if (!slim_gpu_status_.ok()) return slim_gpu_status_;                                     \
  } while (0)

// Precondition of a launcher: InvalidArgument naming the kernel and the condition.
#define SLIM_GPU_REQUIRE(cond, name)                                                        \
  do {                                                                                      \
    if (!(cond)) return ::slim::InvalidArgumentError(std::string(name) + ": requires " #cond); \
  } while (0)
