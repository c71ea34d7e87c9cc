// Probe: for the 8B model's prefill GEMM shapes (y[M x N] = x[M x K] W[N x K]^T, bf16, fp32
// accumulate), time cublasGemmEx's default choice against every algorithm cuBLASLt's heuristic
// offers (up to 16), to see whether choosing by measurement would pay. Not part of the build:
//   nvcc -std=c++17 -O2 -arch=sm_90a gemm_algos.cu -lcublasLt -lcublas -o gemm_algos
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cstdio>
#include <vector>

#define CK(x) do { auto e = (x); if (e != 0) { std::printf("%s failed: %d (line %d)\n", #x, (int)e, __LINE__); return 1; } } while (0)

int main(int argc, char** argv) {
  const int M = argc > 1 ? std::atoi(argv[1]) : 32768;
  const int shapes[][2] = {{28672, 4096}, {4096, 14336}, {6144, 4096}, {4096, 4096}};
  size_t ws_bytes = 64 << 20;
  void *x, *w, *y, *ws;
  CK(cudaMalloc(&x, size_t(M) * 14336 * 2));
  CK(cudaMalloc(&w, size_t(28672) * 4096 * 2));
  CK(cudaMalloc(&y, size_t(M) * 28672 * 2));
  CK(cudaMalloc(&ws, ws_bytes));
  CK(cudaMemset(x, 0x3c, size_t(M) * 14336 * 2));  // small finite bf16 values
  CK(cudaMemset(w, 0x3c, size_t(28672) * 4096 * 2));
  cublasHandle_t h; CK(cublasCreate(&h)); CK(cublasSetWorkspace(h, ws, ws_bytes));
  cublasLtHandle_t lt; CK(cublasLtCreate(&lt));
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  const float one = 1.0f, zero = 0.0f;
  for (auto& s : shapes) {
    const int N = s[0], K = s[1];
    const double flop = 2.0 * M * N * K;
    auto time = [&](auto&& f) {
      for (int i = 0; i < 3; ++i) f();
      cudaEventRecord(e0);
      const int reps = 10;
      for (int i = 0; i < reps; ++i) f();
      cudaEventRecord(e1); cudaEventSynchronize(e1);
      float ms; cudaEventElapsedTime(&ms, e0, e1);
      return ms / reps;
    };
    // Column-major view: C[N x M] = W^T[N x K] * X[K x M]  (W stored [N][K] row-major = K x N col-major).
    float ms = time([&] {
      cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, CUDA_R_16BF, K, x, CUDA_R_16BF, K, &zero, y,
                   CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    });
    std::printf("M=%d N=%d K=%d  GemmEx default %.3f ms %.1f TFLOP/s\n", M, N, K, ms, flop / ms / 1e9);
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
    cublasLtMatmulHeuristicResult_t res[16]; int n = 0;
    CK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 16, res, &n));
    for (int i = 0; i < n; ++i) {
      float t = time([&] {
        cublasLtMatmul(lt, op, &one, w, la, x, lb, &zero, y, lc, y, lc, &res[i].algo, ws, ws_bytes, 0);
      });
      int id = 0, tile = 0, stages = 0, swz = 0; size_t sz;
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swz, sizeof swz, &sz);
      std::printf("   lt heuristic #%d (algo %d tile %d stages %d swizzle %d): %.3f ms %.1f TFLOP/s\n", i, id, tile,
                  stages, swz, t, flop / t / 1e9);
    }
  }
  return 0;
}
