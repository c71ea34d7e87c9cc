// The CUDA backend's tuned prefill products (engine/backend/cuda/gemm_tuner.h: cublasGemmEx or
// the fastest cuBLASLt algorithm per shape and size bucket) against the CPU backend and against
// untuned cublasGemmEx (a second CUDA backend with cuda_gemm_tune off), on fresh random
// bf16-rounded inputs; tolerances are relative L2 errors. Also: a shape gives the same bits on
// every call (the tuning keeps no in-place split-K reductions), and the rows of one bucket other
// than the one it was tuned on. The MLP (gate-up, SwiGLU, down) on aligned and misaligned views
// against the CPU backend. Device tests skip where no CUDA device is present.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/backend/backend.h"
#include "tests/cuda/cuda_test_util.h"

namespace slim {
namespace {

constexpr double kTolF32 = kProductTolF32;
constexpr double kTolBf16 = kProductTolBf16;
// Two bf16 products with bf16 intermediates (gate-up or act) on the way.
constexpr double kMlpTol = 1e-2;

class CudaGemm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    BackendOptions o;
    o.device = Device::kCuda;
    o.cuda_gemm_tune = Toggle::kOn;
    auto t = CreateBackend(o);
    if (t.ok()) tuned_ = std::move(*t).release();
    o.cuda_gemm_tune = Toggle::kOff;
    auto u = CreateBackend(o);
    if (u.ok()) untuned_ = std::move(*u).release();
    cpu_ = std::move(*CreateBackend(BackendOptions{})).release();
  }
  static void TearDownTestSuite() {
    delete tuned_;
    delete untuned_;
    delete cpu_;
    tuned_ = untuned_ = cpu_ = nullptr;
  }
  void SetUp() override {
    if (tuned_ == nullptr || untuned_ == nullptr) GTEST_SKIP() << "no CUDA device";
  }
  static Backend* tuned_;
  static Backend* untuned_;
  static Backend* cpu_;
};
Backend* CudaGemm::tuned_ = nullptr;
Backend* CudaGemm::untuned_ = nullptr;
Backend* CudaGemm::cpu_ = nullptr;

// Row counts on both sides of the tuning threshold (256) and several in one bucket (300 and 500
// in 512; 1000 and 1024 in 1024), SmolLM2 and 8B-like projections, x a strided column view,
// outputs of both types as strided views at an odd element offset.
TEST_F(CudaGemm, TunedMatchesCpuAndUntunedAndRepeatsBitForBit) {
  struct Shape {
    int64_t m, k;
  };
  const Shape shapes[] = {{960, 576}, {1536, 576}, {4096, 1024}, {1000, 1048}};
  const int64_t row_counts[] = {200, 300, 500, 1000, 1024};
  uint64_t seed = 7;
  for (const Shape& s : shapes) {
    for (int64_t n : row_counts) {
      const int64_t m = s.m, k = s.k, pad = 8;
      const auto xw = RandomBf16(static_cast<size_t>(n * (k + pad)), seed++, 1.0f);
      const auto w = RandomBf16(static_cast<size_t>(m * k), seed++, 0.05f);
      std::vector<float> x;
      x.reserve(static_cast<size_t>(n * k));
      for (int64_t r = 0; r < n; ++r) x.insert(x.end(), xw.begin() + r * (k + pad) + 4, xw.begin() + r * (k + pad) + 4 + k);
      std::vector<float> want;
      {
        Buffer xc = Put(cpu_, DType::kF32, x, n, k), wc = Put(cpu_, DType::kF32, w, m, k);
        auto oc = cpu_->Alloc(DType::kF32, n, m);
        ASSERT_TRUE(oc.ok());
        cpu_->MatMul(xc.view(), wc.view(), oc->view());
        want = Get(cpu_, oc->view());
      }
      for (DType out_t : {DType::kF32, DType::kBF16}) {
        std::vector<float> got[2];
        for (int b = 0; b < 2; ++b) {
          Backend* be = b == 0 ? tuned_ : untuned_;
          Buffer xg = Put(be, DType::kBF16, xw, n, k + pad), wg = Put(be, DType::kBF16, w, m, k);
          auto og = be->Alloc(out_t, n, m + 5);
          ASSERT_TRUE(og.ok());
          const TensorView xv = xg.view().Cols(4, k), ov = og->view().Cols(3, m);
          be->MatMul(xv, wg.view(), ov);
          ASSERT_TRUE(be->Sync().ok());
          got[b] = Get(be, ov);
          if (be == tuned_) {  // again: the same bits
            be->MatMul(xv, wg.view(), ov);
            ASSERT_TRUE(be->Sync().ok());
            EXPECT_EQ(Get(be, ov), got[b]) << "n=" << n << " m=" << m << " k=" << k;
          }
        }
        const double tol = out_t == DType::kF32 ? kTolF32 : kTolBf16;
        EXPECT_LT(RelL2(got[0], want), tol) << "tuned n=" << n << " m=" << m << " k=" << k;
        EXPECT_LT(RelL2(got[1], want), tol) << "untuned n=" << n << " m=" << m << " k=" << k;
        EXPECT_LT(RelL2(got[0], got[1]), 2 * tol) << "n=" << n << " m=" << m << " k=" << k;
      }
    }
  }
}

// The MLP (gate-up, SwiGLU, down) against the CPU backend (f32) at row counts below and past the
// tuner's 256-row threshold and past a 128-row tile, x as an aligned and a misaligned strided
// view (the tuned product takes the misaligned view after an aligned x of the same shape: the
// choice timed on aligned buffers once failed there with CUBLAS_STATUS_NOT_SUPPORTED).
TEST_F(CudaGemm, MlpMatchesCpuOnAlignedAndMisalignedViews) {
  const int64_t d = 256, ff = 384, pad = 16;
  uint64_t seed = 101;
  const auto w_gu = RandomBf16(static_cast<size_t>(2 * ff * d), seed++, 0.08f);
  const auto w_dn = RandomBf16(static_cast<size_t>(d * ff), seed++, 0.08f);
  for (int64_t n : {200, 256, 300, 1000}) {
    for (int64_t offset : {8, 4}) {
      const auto xw = RandomBf16(static_cast<size_t>(n * (d + pad)), seed++, 1.0f);
      std::vector<float> x;
      for (int64_t r = 0; r < n; ++r) {
        x.insert(x.end(), xw.begin() + r * (d + pad) + offset, xw.begin() + r * (d + pad) + offset + d);
      }
      std::vector<float> want;
      {
        Buffer xc = Put(cpu_, DType::kF32, x, n, d), gc = Put(cpu_, DType::kF32, w_gu, 2 * ff, d),
               dc = Put(cpu_, DType::kF32, w_dn, d, ff);
        auto gu = cpu_->Alloc(DType::kF32, n, 2 * ff), act = cpu_->Alloc(DType::kF32, n, ff),
             out = cpu_->Alloc(DType::kF32, n, d);
        ASSERT_TRUE(gu.ok() && act.ok() && out.ok());
        cpu_->Mlp(xc.view(), {gc.view(), nullptr, dc.view(), nullptr}, {gu->view(), act->view()}, out->view());
        want = Get(cpu_, out->view());
      }
      Buffer xg = Put(tuned_, DType::kBF16, xw, n, d + pad), gg = Put(tuned_, DType::kBF16, w_gu, 2 * ff, d),
             dg = Put(tuned_, DType::kBF16, w_dn, d, ff);
      auto gu = tuned_->Alloc(DType::kBF16, n, 2 * ff), act = tuned_->Alloc(DType::kBF16, n, ff),
           out = tuned_->Alloc(DType::kBF16, n, d);
      ASSERT_TRUE(gu.ok() && act.ok() && out.ok());
      tuned_->Mlp(xg.view().Cols(offset, d), {gg.view(), nullptr, dg.view(), nullptr}, {gu->view(), act->view()},
                  out->view());
      const Status st = tuned_->Sync();
      ASSERT_TRUE(st.ok()) << st.ToString() << " n=" << n << " offset=" << offset;
      EXPECT_LT(RelL2(Get(tuned_, out->view()), want), kMlpTol) << "n=" << n << " offset=" << offset;
    }
  }
}

TEST(CudaGemmOption, UnknownModeIsRefusedByName) {
  auto b = ParseToggle("cuda GEMM tuning mode", "sometimes");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("sometimes"), std::string::npos) << b.status().ToString();
}

}  // namespace
}  // namespace slim
