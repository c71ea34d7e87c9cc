// Prefill GEMMs chosen by measurement: out[n x m] = x[n x k] w[m x k]^T through cuBLASLt with the
// algorithm that ran fastest for this shape, or cublasGemmEx's own choice where that was fastest.
//
// cuBLAS's heuristic is not the fastest for the 8B model's prefill shapes on the H200: among
// cuBLASLt's own candidates, measured at 32K rows on constant inputs
// (bench/probes/gemm_algos.cu), the best ran 3-13% faster than cublasGemmEx's default; inside
// the model, on random weights (more power, lower clocks), the prefill GEMMs gained 2-4%. So the
// first product of each (m, k, strides, types) and power-of-two bucket of n >= kMinRows times
// GemmEx and up to kCandidates cuBLASLt algorithms on the call's own buffers (the products write
// only `out`, which the winner then writes last) and keeps the fastest for the bucket. Each shape
// and bucket pays this once per process: two runs of each candidate and four more of each of the
// three fastest, up to 30 of its GEMMs.
// Algorithms with in-place split-K reductions are left out, so a shape's result is the same on
// every call.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "engine/core/status.h"

namespace slim::cuda {

struct GemmArgs {
  const void* w = nullptr;  // [m x k], row stride ldw
  cudaDataType_t w_type = CUDA_R_16BF;
  int64_t ldw = 0;
  const void* x = nullptr;  // [n x k], row stride ldx
  cudaDataType_t x_type = CUDA_R_16BF;
  int64_t ldx = 0;
  void* out = nullptr;      // [n x m], row stride ldo
  cudaDataType_t out_type = CUDA_R_16BF;
  int64_t ldo = 0;
  int64_t m = 0, n = 0, k = 0;
};

class GemmTuner {
 public:
  static constexpr int64_t kMinRows = 256;  // fewer rows: cublasGemmEx as is
  static constexpr int kCandidates = 8;
  static constexpr size_t kFinalists = 3;  // timed twice more before the choice

  GemmTuner() = default;
  GemmTuner(const GemmTuner&) = delete;
  GemmTuner& operator=(const GemmTuner&) = delete;
  ~GemmTuner();

  // `tune` false: every product goes to cublasGemmEx (BackendOptions::cuda_gemm_tune "off").
  Status Init(cudaStream_t stream, cublasHandle_t cublas, void* workspace, size_t workspace_bytes, bool tune);
  Status Run(const GemmArgs& a);
  bool tuning() const { return tune_; }

 private:
  // An operation and its matrix layouts for one exact shape.
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t lw = nullptr, lx = nullptr, lo = nullptr;
    bool checked = false, algo_ok = false;  // whether the bucket's algorithm takes this exact shape
    Plan() = default;
    Plan(const Plan&) = delete;
    Plan& operator=(const Plan&) = delete;
    ~Plan();
  };
  // (n, m, k, ldw, ldx, ldo, w/x/out types, the alignment of the three pointers: cuBLASLt's
  // algorithms require some, so a choice timed on aligned buffers may not run on others)
  using ShapeKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, int, int>;
  struct Choice {
    bool lt = false;  // false: cublasGemmEx
    cublasLtMatmulAlgo_t algo{};
  };

  Status GemmEx(const GemmArgs& a);
  Status MakePlan(const GemmArgs& a, Plan* p);
  StatusOr<Choice> Tune(const GemmArgs& a, const Plan& plan);
  StatusOr<float> TimeOnce(const GemmArgs& a, const Plan& plan, const Choice& c);
  Status RunChoice(const GemmArgs& a, const Plan& plan, const Choice& c);

  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* ws_ = nullptr;
  size_t ws_bytes_ = 0;
  bool tune_ = false;
  cudaEvent_t t0_ = nullptr, t1_ = nullptr;
  std::map<ShapeKey, Choice> choices_;  // n as its bucket
  std::map<ShapeKey, Plan> plans_;      // n exact; cleared when it grows past kMaxPlans
  static constexpr size_t kMaxPlans = 64;
};

}  // namespace slim::cuda
