// GEMM probes for the 8B model's prefill products (y[M x N] = x[M x K] W[N x K]^T, bf16 in, fp32
// accumulate), one tool with three modes; M (rows) defaults to 32768. Not part of the build:
//   nvcc -std=c++17 -O2 -arch=sm_90a gemm_probe.cu -lcublasLt -lcublas -o gemm_probe
//   ./gemm_probe algos|acc|sustained [M]
//
// algos:     time cublasGemmEx's default choice against every algorithm cuBLASLt's heuristic
//            offers (up to 16), to see whether choosing by measurement would pay.
// acc:       would folding the residual add into the O and down projections pay? Compare the
//            fastest heuristic candidate writing bf16 (beta 0, as the engine does: the add then
//            happens in AddRmsNorm, ~1.5 GB of traffic at 32K rows) against writing fp32
//            D = xW^T + C with C = D the fp32 residual (beta 1; the norm then reads 0.75 GB).
// sustained: does the GEMM tuner's short timing pick the algorithm that is fastest inside a
//            prefill, where the H200 runs at its 700 W limit? Time the default and the
//            candidates two ways: "burst" (the second of two runs, as GemmTuner times) and "hot"
//            (mean of 12 runs right after 150 ms of the default GEMM heated the chip).
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#define CK(x) do { auto e = (x); if (e != 0) { std::printf("%s failed: %d (line %d)\n", #x, (int)e, __LINE__); return 1; } } while (0)

// Deterministic pseudo-random bf16 in [-0.05, 0.05) (random inputs: the power draw matters).
__global__ void Fill(__nv_bfloat16* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
    p[i] = __float2bfloat16((float(h & 0xffff) / 65536.0f - 0.5f) * 0.1f);
  }
}

// cuBLASLt descriptors of y[M x N] = x[M x K] W[N x K]^T in column-major form (C[N x M] =
// W^T X; W stored [N][K] row-major is K x N column-major), output type `ot`, and up to `max`
// (<= 16) heuristic candidates; `no_inplace_reduction` leaves out split-K schemes that reduce in
// place (as the engine's tuner does).
struct LtGemm {
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulHeuristicResult_t res[16];
  int n = 0;
};

int MakeLtGemm(cublasLtHandle_t lt, int M, int N, int K, cudaDataType_t ot, size_t ws_bytes, int max,
               bool no_inplace_reduction, LtGemm* g) {
  CK(cublasLtMatmulDescCreate(&g->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CK(cublasLtMatmulDescSetAttribute(g->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  CK(cublasLtMatmulDescSetAttribute(g->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  CK(cublasLtMatrixLayoutCreate(&g->la, CUDA_R_16BF, K, N, K));
  CK(cublasLtMatrixLayoutCreate(&g->lb, CUDA_R_16BF, K, M, K));
  CK(cublasLtMatrixLayoutCreate(&g->lc, ot, N, M, N));
  CK(cublasLtMatmulPreferenceCreate(&g->pref));
  CK(cublasLtMatmulPreferenceSetAttribute(g->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                          sizeof ws_bytes));
  if (no_inplace_reduction) {
    const uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_MASK & ~uint32_t{CUBLASLT_REDUCTION_SCHEME_INPLACE};
    CK(cublasLtMatmulPreferenceSetAttribute(g->pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes,
                                            sizeof schemes));
  }
  CK(cublasLtMatmulAlgoGetHeuristic(lt, g->op, g->la, g->lb, g->lc, g->lc, g->pref, max, g->res, &g->n));
  return 0;
}

void DestroyLtGemm(LtGemm* g) {
  cublasLtMatmulPreferenceDestroy(g->pref);
  cublasLtMatrixLayoutDestroy(g->la);
  cublasLtMatrixLayoutDestroy(g->lb);
  cublasLtMatrixLayoutDestroy(g->lc);
  cublasLtMatmulDescDestroy(g->op);
}

int RunAlgos(int argc, char** argv) {
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
    LtGemm g;
    if (MakeLtGemm(lt, M, N, K, CUDA_R_16BF, ws_bytes, 16, false, &g) != 0) return 1;
    auto& res = g.res;
    for (int i = 0; i < g.n; ++i) {
      float t = time([&] {
        cublasLtMatmul(lt, g.op, &one, w, g.la, x, g.lb, &zero, y, g.lc, y, g.lc, &res[i].algo, ws, ws_bytes, 0);
      });
      int id = 0, tile = 0, stages = 0, swz = 0; size_t sz;
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swz, sizeof swz, &sz);
      std::printf("   lt heuristic #%d (algo %d tile %d stages %d swizzle %d): %.3f ms %.1f TFLOP/s\n", i, id, tile,
                  stages, swz, t, flop / t / 1e9);
    }
    DestroyLtGemm(&g);
  }
  return 0;
}

int RunAcc(int argc, char** argv) {
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
        LtGemm g;
        if (MakeLtGemm(lt, M, N, K, ot, ws_bytes, 8, false, &g) != 0) return 1;
        const int n = g.n;
        float best = 1e9f;
        for (int i = 0; i < n; ++i) {
          auto run = [&] {
            return cublasLtMatmul(lt, g.op, &one, w, g.la, x, g.lb, acc ? &one : &zero, y, g.lc, y, g.lc, &g.res[i].algo,
                                  ws, ws_bytes, 0);
          };
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
        DestroyLtGemm(&g);
      }
    }
  }
  return 0;
}

int RunSustained(int argc, char** argv) {
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
    LtGemm g;
    if (MakeLtGemm(lt, M, N, K, CUDA_R_16BF, ws_bytes, 8, true, &g) != 0) return 1;
    auto& res = g.res;
    for (int i = 0; i < g.n; ++i) {
      int id = 0, tile = 0, stages = 0, cl = 0; size_t sz;
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &sz);
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cl, sizeof cl, &sz);
      char name[96];
      std::snprintf(name, sizeof name, "lt #%d algo %d tile %d stages %d cluster %d", i, id, tile, stages, cl);
      measure(name, [&] {
        cublasLtMatmul(lt, g.op, &one, w, g.la, x, g.lb, &zero, y, g.lc, y, g.lc, &res[i].algo, ws, ws_bytes, 0);
      });
    }
    DestroyLtGemm(&g);
  }
  return 0;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  // Each mode reads its optional M as its own argv[1].
  if (std::strcmp(mode, "algos") == 0) return RunAlgos(argc - 1, argv + 1);
  if (std::strcmp(mode, "acc") == 0) return RunAcc(argc - 1, argv + 1);
  if (std::strcmp(mode, "sustained") == 0) return RunSustained(argc - 1, argv + 1);
  std::fprintf(stderr, "usage: gemm_probe algos|acc|sustained [M]\n");
  return 2;
}
