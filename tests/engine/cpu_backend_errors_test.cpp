// The CPU backend reports a shape error in a void op (and ids or rows outside their tables) by
// the next Sync, Download or SummarizeLogits, once, skips the op, and keeps working: the same
// contract as the CUDA backend (tests/cuda/cuda_ops_test.cpp ErrorsAreReportedNotFatal). Release
// builds compile asserts out, so a wrong row count in the pruned forward once ran silently here.
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "engine/backend/backend.h"

namespace slim {
namespace {

std::unique_ptr<Backend> Cpu() {
  auto b = CreateBackend(BackendOptions{});
  EXPECT_TRUE(b.ok());
  return std::move(*b);
}

Buffer Filled(Backend* be, int64_t rows, int64_t cols, float v) {
  auto b = be->Alloc(DType::kF32, rows, cols);
  EXPECT_TRUE(b.ok());
  std::vector<float> h(static_cast<size_t>(rows * cols), v);
  EXPECT_TRUE(be->Upload(h.data(), b->view()).ok());
  return std::move(*b);
}

TEST(CpuBackendErrors, ShapeErrorIsReportedOnceAndTheOpSkipped) {
  auto be = Cpu();
  Buffer x = Filled(be.get(), 4, 8, 1.0f), w = Filled(be.get(), 5, 9, 1.0f), out = Filled(be.get(), 4, 5, -7.0f);
  be->MatMul(x.view(), w.view(), out.view());  // k differs: 8 vs 9
  const Status s = be->Sync();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("MatMul"), std::string::npos) << s.ToString();
  EXPECT_TRUE(be->Sync().ok());  // reported once
  std::vector<float> got(20);
  ASSERT_TRUE(be->Download(out.view(), got.data()).ok());
  EXPECT_EQ(got, std::vector<float>(20, -7.0f));  // the op did not write

  // The backend keeps working: a valid product afterwards.
  Buffer w2 = Filled(be.get(), 5, 8, 0.5f);
  be->MatMul(x.view(), w2.view(), out.view());
  ASSERT_TRUE(be->Download(out.view(), got.data()).ok());
  EXPECT_EQ(got, std::vector<float>(20, 4.0f));
}

TEST(CpuBackendErrors, EachVoidOpChecksItsShapes) {
  auto be = Cpu();
  Buffer a = Filled(be.get(), 4, 8, 1.0f), b = Filled(be.get(), 3, 8, 1.0f), w = Filled(be.get(), 1, 8, 1.0f);
  Buffer g = Filled(be.get(), 4, 6, 1.0f);
  std::vector<float> host(32);
  struct Case {
    const char* name;
    std::function<void()> run;
  };
  const std::vector<int32_t> pos3 = {0, 1, 2}, rows5 = {0, 1, 2, 3, 0}, bad_row = {0, 1, 9};
  RopeTable rope;
  rope.rope_dim = 4;
  rope.inv_freq = {1.0f, 0.5f};
  const std::vector<Case> cases = {
      {"RmsNorm", [&] { be->RmsNorm(a.view(), w.view(), 1e-5f, b.view()); }},
      {"Add", [&] { be->Add(a.view(), b.view()); }},
      {"Rope", [&] { be->Rope(a.view(), 2, 4, pos3, rope); }},
      {"SwiGlu", [&] { be->SwiGlu(g.view(), a.view()); }},
      {"GatherRows", [&] { be->GatherRows(a.view(), rows5, b.view()); }},
      {"GatherRows", [&] { be->GatherRows(a.view(), bad_row, b.view()); }},
      {"Embed", [&] { be->Embed(a.view(), std::vector<int32_t>{0, 4, 1}, b.view()); }},
  };
  for (const Case& c : cases) {
    c.run();
    const Status s = be->Download(a.view(), host.data());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.name << ": " << s.ToString();
    EXPECT_NE(s.message().find(c.name), std::string::npos) << s.ToString();
    EXPECT_TRUE(be->Sync().ok()) << c.name;
  }
}

// The two-half scoring (Backend::BeginScoreBlocks / EndScoreBlocks, default: scores at Begin):
// each slot returns the scores ScoreBlocks gives, once; an End with nothing begun, or a slot out
// of range, is refused with a clear error.
TEST(CpuBackendErrors, EndScoreBlocksWithoutBeginIsRefused) {
  auto be = Cpu();
  const AttnShape shape{2, 1, 4, 0.5f};
  Buffer q = Filled(be.get(), 130, 8, 0.25f), k0 = Filled(be.get(), 130, 4, 1.0f), k1 = Filled(be.get(), 130, 4, -2.0f);
  std::vector<float> want0, want1, got;
  ASSERT_TRUE(be->ScoreBlocks(q.view(), k0.view(), shape, 0, 130, 64, 8, 1, false, &want0).ok());
  ASSERT_TRUE(be->ScoreBlocks(q.view(), k1.view(), shape, 0, 130, 64, 8, 1, false, &want1).ok());
  ASSERT_EQ(want0.size(), 3u);
  ASSERT_TRUE(be->BeginScoreBlocks(0, q.view(), k0.view(), shape, 0, 130, 64, 8, 1, false).ok());
  ASSERT_TRUE(be->BeginScoreBlocks(1, q.view(), k1.view(), shape, 0, 130, 64, 8, 1, false).ok());
  ASSERT_TRUE(be->EndScoreBlocks(1, &got).ok());
  EXPECT_EQ(got, want1);
  ASSERT_TRUE(be->EndScoreBlocks(0, &got).ok());
  EXPECT_EQ(got, want0);
  const Status again = be->EndScoreBlocks(0, &got);
  EXPECT_EQ(again.code(), StatusCode::kFailedPrecondition) << again.ToString();
  EXPECT_NE(again.message().find("slot 0"), std::string::npos) << again.ToString();
  EXPECT_EQ(be->EndScoreBlocks(7, &got).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(be->BeginScoreBlocks(-1, q.view(), k0.view(), shape, 0, 130, 64, 8, 1, false).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace slim
