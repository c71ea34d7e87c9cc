// Probe: does the GEMM tuner's short timing pick the algorithm that is fastest inside a prefill,
// where the H200 runs at its 700 W limit? For the 8B model's 32K-row prefill products (random
// inputs), time cublasGemmEx's default and cuBLASLt's heuristic candidates two ways: "burst"
// (the second of two runs, as GemmTuner times) and "hot" (mean of 12 runs right after 150 ms of
// the default GEMM heated the chip). Not part of the build:
//   nvcc -std=c++17 -O2 -arch=sm_90a gemm_sustained.cu -lcublasLt -lcublas -o gemm_sustained
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>

#define CK(x) do { auto e = (x); if (e != 0) { std::printf("%s failed: %d (line %d)\n", #x, (int)e, __LINE__); return 1; } } while (0)

__global__ void Fill(__nv_bfloat16* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
    p[i] = __float2bfloat16((float(h & 0xffff) / 65536.0f - 0.5f) * 0.1f);
  }
}

int main(int argc, char** argv) {
  const int M = argc > 1 ? std::atoi(argv[1]) : 32768;
  const int shapes[][2] = {{28672, 4096}, {4096, 14336}, {6144, 4096}, {4096, 4096}};
  size_t ws_bytes = 32 << 20;
  void *x, *w, *y, *ws;
  CK(cudaMalloc(&x, size_t(M) * 14336 * 2));
  CK(cudaMalloc(&w, size_t(28672) * 4096 * 2));
  CK(cudaMalloc(&y, size_t(M) * 28672 * 2));
  CK(cudaMalloc(&ws, ws_bytes));
  Fill<<<1024, 256>>>((__nv_bfloat16*)x, size_t(M) * 14336, 1);
  Fill<<<1024, 256>>>((__nv_bfloat16*)w, size_t(28672) * 4096, 2);
  cublasHandle_t h; CK(cublasCreate(&h)); CK(cublasSetWorkspace(h, ws, ws_bytes));
  cublasLtHandle_t lt; CK(cublasLtCreate(&lt));
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  const float one = 1.0f, zero = 0.0f;
  for (auto& s : shapes) {
    const int N = s[0], K = s[1];
    const double flop = 2.0 * M * N * K;
    auto gemmex = [&] {
      cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, CUDA_R_16BF, K, x, CUDA_R_16BF, K, &zero, y,
                   CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    };
    auto elapsed = [&](const std::function<void()>& f, int reps) {
      cudaEventRecord(e0);
      for (int i = 0; i < reps; ++i) f();
      cudaEventRecord(e1); cudaEventSynchronize(e1);
      float ms; cudaEventElapsedTime(&ms, e0, e1);
      return ms / reps;
    };
    auto measure = [&](const char* name, const std::function<void()>& f) {
      f();
      const float burst = elapsed(f, 1);
      const float per = elapsed(gemmex, 1);
      const int heat = int(150.0f / per) + 1;
      for (int i = 0; i < heat; ++i) gemmex();
      const float hot = elapsed(f, 12);
      std::printf("  %-40s burst %.3f ms %6.1f TFLOP/s   hot %.3f ms %6.1f TFLOP/s\n", name, burst, flop / burst / 1e9,
                  hot, flop / hot / 1e9);
    };
    std::printf("M=%d N=%d K=%d\n", M, N, K);
    measure("GemmEx default", gemmex);
    cublasLtMatmulDesc_t op; CK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtMatrixLayout_t la, lb, lc;
    CK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, N, K));
    CK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, M, K));
    CK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, M, N));
    cublasLtMatmulPreference_t pref; CK(cublasLtMatmulPreferenceCreate(&pref));
    CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes));
    const uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_MASK & ~uint32_t{CUBLASLT_REDUCTION_SCHEME_INPLACE};
    CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes, sizeof schemes));
    cublasLtMatmulHeuristicResult_t res[8]; int n = 0;
    CK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 8, res, &n));
    for (int i = 0; i < n; ++i) {
      int id = 0, tile = 0, stages = 0, cl = 0; size_t sz;
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cl, sizeof cl, &sz);
      char name[96];
      std::snprintf(name, sizeof name, "lt #%d algo %d tile %d stages %d cluster %d", i, id, tile, stages, cl);
      measure(name, [&] { cublasLtMatmul(lt, op, &one, w, la, x, lb, &zero, y, lc, y, lc, &res[i].algo, ws, ws_bytes, 0); });
    }
  }
  return 0;
}
