// Probe: would folding the residual add into the O and down projections pay? For y[M x N] =
// x[M x K] W[N x K]^T (bf16 in, fp32 accumulate) compare the fastest of cuBLASLt's heuristic
// candidates writing bf16 (beta 0, as the engine does now; the add then happens in AddRmsNorm:
// ~1.5 GB of traffic at 32K rows) against writing fp32 D = xW^T + C with C = D the fp32 residual
// (beta 1; the norm then reads 0.75 GB). Random inputs (power matters). Not part of the build:
//   nvcc -std=c++17 -O2 -arch=sm_90a gemm_acc.cu -lcublasLt -o gemm_acc
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

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
  const int shapes[][2] = {{4096, 4096}, {4096, 14336}};
  size_t ws_bytes = 64 << 20;
  void *x, *w, *y, *ws;
  CK(cudaMalloc(&x, size_t(M) * 14336 * 2));
  CK(cudaMalloc(&w, size_t(4096) * 14336 * 2));
  CK(cudaMalloc(&y, size_t(M) * 4096 * 4));
  CK(cudaMalloc(&ws, ws_bytes));
  Fill<<<1024, 256>>>((__nv_bfloat16*)x, size_t(M) * 14336, 1);
  Fill<<<1024, 256>>>((__nv_bfloat16*)w, size_t(4096) * 14336, 2);
  CK(cudaMemset(y, 0, size_t(M) * 4096 * 4));
  cublasLtHandle_t lt; CK(cublasLtCreate(&lt));
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  const float one = 1.0f, zero = 0.0f;
  for (int round = 0; round < 2; ++round) {
    for (auto& s : shapes) {
      const int N = s[0], K = s[1];
      const double flop = 2.0 * M * N * K;
      for (int acc = 0; acc < 2; ++acc) {
        const cudaDataType_t ot = acc ? CUDA_R_32F : CUDA_R_16BF;
        cublasLtMatmulDesc_t op; CK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
        CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
        cublasLtMatrixLayout_t la, lb, lc;
        CK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, N, K));
        CK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, M, K));
        CK(cublasLtMatrixLayoutCreate(&lc, ot, N, M, N));
        cublasLtMatmulPreference_t pref; CK(cublasLtMatmulPreferenceCreate(&pref));
        CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes));
        cublasLtMatmulHeuristicResult_t res[8]; int n = 0;
        CK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 8, res, &n));
        float best = 1e9f;
        for (int i = 0; i < n; ++i) {
          auto run = [&] { return cublasLtMatmul(lt, op, &one, w, la, x, lb, acc ? &one : &zero, y, lc, y, lc, &res[i].algo, ws, ws_bytes, 0); };
          if (run() != CUBLAS_STATUS_SUCCESS) continue;
          for (int r = 0; r < 2; ++r) run();
          cudaEventRecord(e0);
          for (int r = 0; r < 8; ++r) run();
          cudaEventRecord(e1); cudaEventSynchronize(e1);
          float ms; cudaEventElapsedTime(&ms, e0, e1); ms /= 8;
          if (ms < best) best = ms;
        }
        std::printf("round %d M=%d N=%d K=%d %s: best of %d %.3f ms %.1f TFLOP/s\n", round, M, N, K,
                    acc ? "fp32 D = xW^T + C" : "bf16 D = xW^T    ", n, best, flop / best / 1e9);
        cublasLtMatmulPreferenceDestroy(pref); cublasLtMatrixLayoutDestroy(la); cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(lc); cublasLtMatmulDescDestroy(op);
      }
    }
  }
  return 0;
}
