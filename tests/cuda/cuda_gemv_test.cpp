// The CUDA backend's few-row products (MatMul with <= 8 rows and the MLP's fused SwiGLU + down, both by
// the GEMV kernel of engine/backend/cuda/gemv.h) against the CPU backend and against cuBLAS (a
// second CUDA backend with cuda_gemv off), on fresh random bf16-rounded inputs; tolerances are
// relative L2 errors. Device tests skip where no CUDA device is present; the argument checks run
// wherever the CUDA backend is compiled in. DISABLED_Bandwidth prints GB/s (run it by hand).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/backend/backend.h"
#include "tests/cuda/cuda_test_util.h"

#ifdef SLIM_HAVE_CUDA
#include "engine/backend/cuda/gemv.h"
#endif

namespace slim {
namespace {


// Rows [0, rows) of a row-major [*, cols] host matrix, columns [c0, c0 + n).
std::vector<float> Slice(const std::vector<float>& h, int64_t cols, int64_t rows, int64_t c0, int64_t n) {
  std::vector<float> out;
  out.reserve(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r)
    out.insert(out.end(), h.begin() + r * cols + c0, h.begin() + r * cols + c0 + n);
  return out;
}

constexpr double kTolF32 = kProductTolF32;
constexpr double kTolBf16 = kProductTolBf16;

class CudaGemv : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    BackendOptions o;
    o.device = Device::kCuda;
    o.cuda_gemv = Toggle::kOn;  // the kernel for every shape it takes ("auto" leaves large ones to cuBLAS)
    auto g = CreateBackend(o);
    if (g.ok()) gemv_ = std::move(*g).release();
    o.cuda_gemv = Toggle::kOff;
    auto c = CreateBackend(o);
    if (c.ok()) cublas_ = std::move(*c).release();
    cpu_ = std::move(*CreateBackend(BackendOptions{})).release();
  }
  static void TearDownTestSuite() {
    delete gemv_;
    delete cublas_;
    delete cpu_;
    gemv_ = cublas_ = cpu_ = nullptr;
  }
  void SetUp() override {
    if (gemv_ == nullptr || cublas_ == nullptr) GTEST_SKIP() << "no CUDA device";
  }

  static Buffer Empty(Backend* be, DType t, int64_t rows, int64_t cols) {
    auto b = be->Alloc(t, rows, cols);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return std::move(*b);
  }

  static Backend* gemv_;
  static Backend* cublas_;
  static Backend* cpu_;
};
Backend* CudaGemv::gemv_ = nullptr;
Backend* CudaGemv::cublas_ = nullptr;
Backend* CudaGemv::cpu_ = nullptr;

struct Shape {
  int64_t m, k;
};

// Every row count 1..8 on the SmolLM2-135M and LLaMA-3.1-8B projections, odd m, and k that is a
// multiple of 8 but not of 32 (a batch that crosses k); x a strided column view, out strided
// views of both output types at an odd element offset.
TEST_F(CudaGemv, MatMulMatchesCpuAndCublas) {
  const Shape shapes[] = {{960, 576},   {576, 576},   {3072, 576},   {576, 1536},   {49152, 576},
                          {6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336}, {128256, 4096},
                          {1000, 1048}, {7, 1048},    {33, 8}};
  uint64_t seed = 1;
  for (const Shape& s : shapes) {
    const int64_t m = s.m, k = s.k, pad = 16;
    const auto xw = RandomBf16(static_cast<size_t>(8 * (k + pad)), seed++, 1.0f);
    const auto w = RandomBf16(static_cast<size_t>(m * k), seed++, 0.05f);
    const auto x = Slice(xw, k + pad, 8, 8, k);
    std::vector<float> want;
    {
      Buffer xc = Put(cpu_, DType::kF32, x, 8, k), wc = Put(cpu_, DType::kF32, w, m, k);
      Buffer oc = Empty(cpu_, DType::kF32, 8, m);
      cpu_->MatMul(xc.view(), wc.view(), oc.view());
      want = Get(cpu_, oc.view());
    }
    std::vector<float> by_cublas[9];
    for (Backend* be : {cublas_, gemv_}) {
      const bool ours = be == gemv_;
      Buffer xg = Put(be, DType::kBF16, xw, 8, k + pad), wg = Put(be, DType::kBF16, w, m, k);
      Buffer of = Empty(be, DType::kF32, 8, m + 5), ob = Empty(be, DType::kBF16, 8, m + 5);
      const TensorView xv = xg.view().Cols(8, k), fv = of.view().Cols(3, m), bv = ob.view().Cols(3, m);
      for (int64_t n = 1; n <= 8; ++n) {
        const size_t count = static_cast<size_t>(n * m);
        be->MatMul(xv.Rows(0, n), wg.view(), fv.Rows(0, n));
        be->MatMul(xv.Rows(0, n), wg.view(), bv.Rows(0, n));
        ASSERT_TRUE(be->Sync().ok());
        const auto got = Get(be, fv.Rows(0, n));
        EXPECT_LT(RelL2(got, want, count), kTolF32) << (ours ? "gemv " : "cublas ") << n << "x" << m << "x" << k;
        EXPECT_LT(RelL2(Get(be, bv.Rows(0, n)), want, count), kTolBf16)
            << (ours ? "gemv " : "cublas ") << n << "x" << m << "x" << k << " bf16 out";
        if (ours) {
          EXPECT_LT(RelL2(got, by_cublas[n], count), kTolF32) << "gemv vs cublas " << n << "x" << m << "x" << k;
        } else {
          by_cublas[n] = got;
        }
      }
    }
  }
}

// Shapes the kernel refuses go to cuBLAS and stay correct: k not a multiple of 8, x off 16-byte
// alignment, a w stride not a multiple of 8, 9 rows, f32 x.
TEST_F(CudaGemv, RefusedShapesFallBackToCublas) {
  const int64_t m = 300, k = 520;
  const auto x = RandomBf16(static_cast<size_t>(9 * (k + 8)), 40, 1.0f),
             w = RandomBf16(static_cast<size_t>(m * (k + 4)), 41, 0.05f);
  struct Case {
    const char* what;
    int64_t n, x_col, k, w_cols;
    DType x_type;
  };
  for (const Case& c : {Case{"k % 8 != 0", 3, 0, 516, k, DType::kBF16}, Case{"misaligned x", 3, 1, k, k, DType::kBF16},
                        Case{"w stride % 8 != 0", 3, 0, k, k + 4, DType::kBF16}, Case{"9 rows", 9, 0, k, k, DType::kBF16},
                        Case{"f32 x", 3, 0, k, k, DType::kF32}}) {
    const auto xs = Slice(x, k + 8, c.n, c.x_col, c.k);
    const auto ws = Slice(w, k + 4, m, 0, c.w_cols);
    Buffer xc = Put(cpu_, DType::kF32, xs, c.n, c.k), wc = Put(cpu_, DType::kF32, Slice(ws, c.w_cols, m, 0, c.k), m, c.k);
    Buffer oc = Empty(cpu_, DType::kF32, c.n, m);
    cpu_->MatMul(xc.view(), wc.view(), oc.view());
    Buffer xg = Put(gemv_, c.x_type, Slice(x, k + 8, c.n, 0, k + 8), c.n, k + 8);
    Buffer wg = Put(gemv_, c.x_type, ws, m, c.w_cols);
    Buffer og = Empty(gemv_, DType::kF32, c.n, m);
    gemv_->MatMul(xg.view().Cols(c.x_col, c.k), wg.view().Cols(0, c.k), og.view());
    ASSERT_TRUE(gemv_->Sync().ok()) << c.what;
    EXPECT_LT(RelL2(Get(gemv_, og.view()), Get(cpu_, oc.view()), static_cast<size_t>(c.n * m)), kTolF32) << c.what;
  }
}

// The MLP with SwiGLU fused into the down projection equals the unfused ops on the same backend
// bit for bit (same gate-up product, same bf16 activation, same kernel), and matches cuBLAS's
// unfused SwiGLU + down projection and the CPU, both fed the same gate-up values. n <= 2, n <= 4 and n > 4 take the
// kernel's three ways of computing the activation; 9 rows take the unfused path.
TEST_F(CudaGemv, MlpFusedMatchesUnfused) {
  const Shape shapes[] = {{576, 1536}, {4096, 14336}, {1000, 1048}, {7, 8}};
  const int64_t d = 64;  // inner size of the gate-up product (the down projection is under test)
  uint64_t seed = 100;
  for (const Shape& s : shapes) {
    const int64_t m = s.m, ff = s.k, pad = 8;
    const auto x = RandomBf16(static_cast<size_t>(9 * d), seed++, 1.0f);
    const auto wgu = RandomBf16(static_cast<size_t>(2 * ff * d), seed++, 0.6f);
    const auto w = RandomBf16(static_cast<size_t>(m * ff), seed++, 0.05f);
    Buffer xg = Put(gemv_, DType::kBF16, x, 9, d), wgug = Put(gemv_, DType::kBF16, wgu, 2 * ff, d);
    Buffer wg = Put(gemv_, DType::kBF16, w, m, ff);
    Buffer gg = Empty(gemv_, DType::kBF16, 9, 2 * ff + pad), act = Empty(gemv_, DType::kBF16, 9, ff);
    Buffer fused = Empty(gemv_, DType::kF32, 9, m), split = Empty(gemv_, DType::kF32, 9, m);
    Buffer fused_b = Empty(gemv_, DType::kBF16, 9, m), split_b = Empty(gemv_, DType::kBF16, 9, m);
    Buffer wb = Put(cublas_, DType::kBF16, w, m, ff);
    Buffer act_b = Empty(cublas_, DType::kBF16, 9, ff), ob = Empty(cublas_, DType::kF32, 9, m);
    Buffer wc = Put(cpu_, DType::kF32, w, m, ff);
    const TensorView guv = gg.view().Cols(pad, 2 * ff);  // a strided scratch view
    const MlpWeights weights{wgug.view(), nullptr, wg.view(), nullptr};
    for (int64_t n = 1; n <= 9; ++n) {
      const size_t count = static_cast<size_t>(n * m);
      const MlpScratch scratch{guv.Rows(0, n), act.Rows(0, n)};
      gemv_->Mlp(xg.Rows(0, n), weights, scratch, fused.Rows(0, n));
      gemv_->Mlp(xg.Rows(0, n), weights, scratch, fused_b.Rows(0, n));
      gemv_->MatMul(xg.Rows(0, n), wgug.view(), guv.Rows(0, n));
      gemv_->SwiGlu(guv.Rows(0, n), act.Rows(0, n));
      gemv_->MatMul(act.Rows(0, n), wg.view(), split.Rows(0, n));
      gemv_->MatMul(act.Rows(0, n), wg.view(), split_b.Rows(0, n));
      ASSERT_TRUE(gemv_->Sync().ok());
      // cuBLAS's unfused SwiGLU + down projection on the same gate-up values.
      Buffer gu_b = Put(cublas_, DType::kBF16, Get(gemv_, guv.Rows(0, n)), n, 2 * ff);
      cublas_->SwiGlu(gu_b.view(), act_b.Rows(0, n));
      cublas_->MatMul(act_b.Rows(0, n), wb.view(), ob.Rows(0, n));
      ASSERT_TRUE(cublas_->Sync().ok());
      // CPU references on the GPU's own gate-up values: exact activation, and the activation
      // rounded to bf16 as the GPU keeps it.
      std::vector<float> want_exact, want_rounded;
      {
        Buffer gc = Put(cpu_, DType::kF32, Get(gemv_, guv.Rows(0, n)), n, 2 * ff);
        Buffer ac = Empty(cpu_, DType::kF32, n, ff), oc = Empty(cpu_, DType::kF32, n, m);
        cpu_->SwiGlu(gc.view(), ac.view());
        cpu_->MatMul(ac.view(), wc.view(), oc.view());
        want_exact = Get(cpu_, oc.view());
        auto a = Get(cpu_, ac.view());
        for (float& v : a) v = RoundBf16(v);
        Buffer ar = Put(cpu_, DType::kF32, a, n, ff);
        cpu_->MatMul(ar.view(), wc.view(), oc.view());
        want_rounded = Get(cpu_, oc.view());
      }
      const auto got = Get(gemv_, fused.Rows(0, n));
      EXPECT_EQ(got, Get(gemv_, split.Rows(0, n))) << n << "x" << m << "x" << ff;
      EXPECT_EQ(Get(gemv_, fused_b.Rows(0, n)), Get(gemv_, split_b.Rows(0, n))) << n << "x" << m << "x" << ff << " bf16";
      EXPECT_LT(RelL2(got, Get(cublas_, ob.Rows(0, n)), count), kTolF32) << "vs cublas " << n << "x" << m << "x" << ff;
      // A CPU activation may round to the other bf16 neighbour now and then (expf differs by an
      // ulp): a few 2^-8 steps in n x ff elements.
      EXPECT_LT(RelL2(got, want_rounded, count), 2e-4) << "vs cpu " << n << "x" << m << "x" << ff;
      // The activation's bf16 rounding itself: about 2^-9 relative per element.
      EXPECT_LT(RelL2(got, want_exact, count), 1e-2) << "vs exact cpu " << n << "x" << m << "x" << ff;
    }
  }
}

#ifdef SLIM_HAVE_CUDA
// Host-side acceptance of the kernel's arguments; no device needed.
TEST(GemvArgsCheck, AcceptsDecodeShapesRefusesTheRest) {
  using cuda::GemvArgs;
  using cuda::GemvSupports;
  const auto* p = reinterpret_cast<const void*>(uintptr_t{1} << 20);
  auto* q = reinterpret_cast<void*>(uintptr_t{1} << 21);
  const GemvArgs ok{.x = p, .x_stride = 4096, .w = p, .w_stride = 4096, .out = q, .out_dtype = DType::kBF16,
                    .out_stride = 6144, .n = 1, .m = 6144, .k = 4096};
  EXPECT_TRUE(GemvSupports(ok));
  auto with = [&](auto change) {
    GemvArgs a = ok;
    change(a);
    return GemvSupports(a);
  };
  EXPECT_TRUE(with([](GemvArgs& a) { a.n = 8; }));
  EXPECT_TRUE(with([](GemvArgs& a) { a.out_dtype = DType::kF32; a.out = static_cast<char*>(a.out) + 4; a.out_stride = 6145; }));
  EXPECT_TRUE(with([](GemvArgs& a) { a.k = 1048; a.m = 7; }));
  EXPECT_TRUE(with([](GemvArgs& a) { a.swiglu = true; a.x_stride = 8192; }));
  EXPECT_FALSE(with([](GemvArgs& a) { a.swiglu = true; }));  // x_stride < 2k
  EXPECT_FALSE(with([](GemvArgs& a) { a.n = 0; }));
  EXPECT_FALSE(with([](GemvArgs& a) { a.n = 9; }));
  EXPECT_FALSE(with([](GemvArgs& a) { a.k = 4092; }));
  EXPECT_FALSE(with([](GemvArgs& a) { a.x_stride = 4100; }));
  EXPECT_FALSE(with([](GemvArgs& a) { a.w_stride = 4100; }));
  EXPECT_FALSE(with([](GemvArgs& a) { a.x = static_cast<const char*>(a.x) + 2; }));
  EXPECT_FALSE(with([](GemvArgs& a) { a.w = static_cast<const char*>(a.w) + 8; }));
  EXPECT_FALSE(with([](GemvArgs& a) { a.out_stride = 6143; }));
  EXPECT_FALSE(with([](GemvArgs& a) { a.out_dtype = DType::kF16; }));
}
#endif

// Bandwidth of the LLaMA-3.1-8B decode products, cuBLAS vs the GEMV kernel, printed (not
// asserted). Each shape cycles through enough weight copies to defeat the 50 MB L2. "event":
// device time of the op alone (profiling events); "stream": wall time of back-to-back calls.
// Run: cuda_gemv_test --gtest_also_run_disabled_tests --gtest_filter='*Bandwidth*'
TEST_F(CudaGemv, DISABLED_Bandwidth) {
  struct Case {
    const char* name;
    int64_t m, k;
    bool swiglu;
  };
  const Case cases[] = {{"qkv", 6144, 4096, false},    {"o", 4096, 4096, false},        {"gate_up", 28672, 4096, false},
                        {"down", 4096, 14336, false},   {"lm_head", 128256, 4096, false}, {"swiglu+down", 4096, 14336, true}};
  std::printf("%-12s %2s %-7s %10s %10s %10s\n", "shape", "n", "path", "us/call", "event GB/s", "stream GB/s");
  for (const Case& c : cases) {
    const int64_t bytes = c.m * c.k * 2;
    const int copies = static_cast<int>(std::max<int64_t>(2, (int64_t{512} << 20) / bytes + 1));
    for (Backend* be : {cublas_, gemv_}) {
      std::vector<Buffer> ws;
      for (int i = 0; i < copies; ++i) {
        ws.push_back(Empty(be, DType::kBF16, c.m, c.k));
        ASSERT_TRUE(be->FillSynthetic(SyntheticFill{.state = uint64_t(7 + i), .half_width = 0.05f}, ws.back().view()).ok());
      }
      // swiglu+down runs the whole Mlp with a small gate-up product (inner size 64, its weight in
      // L2) whose time is left out below.
      const int64_t x_cols = c.swiglu ? 64 : c.k;
      Buffer x = Put(be, DType::kBF16, RandomBf16(static_cast<size_t>(8 * x_cols), 9, 1.0f), 8, x_cols);
      Buffer w_gu = Put(be, DType::kBF16, RandomBf16(static_cast<size_t>(2 * c.k * x_cols), 10, 0.6f), 2 * c.k, x_cols);
      Buffer gate_up = Empty(be, DType::kBF16, 8, 2 * c.k);
      Buffer act = Empty(be, DType::kBF16, 8, c.k);
      Buffer out = Empty(be, c.m > 100000 ? DType::kF32 : DType::kBF16, 8, c.m);
      for (int64_t n : {1, 2, 4, 8}) {
        auto call = [&](int i) {
          const TensorView w = ws[static_cast<size_t>(i % copies)].view();
          if (c.swiglu) {
            be->Mlp(x.Rows(0, n), {w_gu.view(), nullptr, w, nullptr}, {gate_up.Rows(0, n), act.Rows(0, n)},
                    out.Rows(0, n));
          } else {
            be->MatMul(x.Rows(0, n), w, out.Rows(0, n));
          }
        };
        const int iters = 60;
        for (int i = 0; i < 6; ++i) call(i);
        ASSERT_TRUE(be->Sync().ok());
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < iters; ++i) call(i);
        ASSERT_TRUE(be->Sync().ok());
        const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
        be->SetProfiling(true);
        for (int i = 0; i < iters; ++i) call(i);
        be->SetProfiling(false);
        double ms = 0.0;
        const std::string gate_up_op = "MatMul[" + std::to_string(n) + "x" + std::to_string(2 * c.k) + "x64]";
        for (const OpTime& t : be->TakeProfile()) {
          if (c.swiglu && t.op.find(gate_up_op) != std::string::npos) continue;  // not the product under test
          ms += t.ms;  // SwiGlu + MatMul where unfused
        }
        const double event_s = ms * 1e-3 / iters;
        std::printf("%-12s %2lld %-7s %10.1f %10.0f %10.0f\n", c.name, static_cast<long long>(n),
                    be == gemv_ ? "gemv" : "cublas", event_s * 1e6, bytes / event_s * 1e-9, bytes / wall_s * 1e-9);
      }
    }
  }
}

}  // namespace
}  // namespace slim

#ifdef SLIM_HAVE_CUDA
namespace slim {
namespace {

TEST(CudaGemvOption, UnknownModeIsRefusedByName) {
  auto b = ParseToggle("cuda GEMV mode", "maybe");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("maybe"), std::string::npos) << b.status().ToString();
}

}  // namespace
}  // namespace slim
#endif
