// Decode passes recorded as CUDA graphs (engine/backend/cuda/stream_graphs.h) against the same
// passes launched op by op: the recording itself (segments, gaps where the stager waits for
// the stream, a recording a forbidden call breaks) and whole decode steps, dense and under a
// tiered decode KV budget, bit for bit. Skipped where no CUDA device is present.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/host_stager.h"
#include "engine/backend/cuda/mapped_copy.h"
#include "engine/backend/cuda/stream_graphs.h"
#include "engine/engine.h"
#include "tests/cuda/cuda_test_util.h"

namespace slim {
namespace {

// Staged arrays copied into their own slices of a device buffer, with a ring of four slots so
// that the stager wraps (waits for the stream) inside the recording again and again: every
// slice ends up with the values staged for it, pass after pass, and later passes update the
// first pass's graphs instead of instantiating new ones.
TEST(CudaStreamGraphs, StagingThatWrapsInsideARecordingLandsInOrder) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  {
    cuda::HostStager stager;
    ASSERT_TRUE(stager.Init(4096, s).ok());
    cuda::StreamGraphs graphs;
    graphs.Init(s);
    constexpr int kSlices = 48, kInts = 256;
    int32_t* out = nullptr;
    ASSERT_EQ(cudaMalloc(&out, sizeof(int32_t) * kSlices * kInts), cudaSuccess);
    for (int pass = 0; pass < 3; ++pass) {
      ASSERT_TRUE(graphs.Begin().ok());
      for (int i = 0; i < kSlices; ++i) {
        std::vector<int32_t> v(kInts);
        for (int j = 0; j < kInts; ++j) v[static_cast<size_t>(j)] = pass * 100000 + i * 1000 + j;
        auto dev = stager.Stage(v.data(), v.size() * sizeof(int32_t));
        ASSERT_TRUE(dev.ok()) << dev.status().ToString();
        ASSERT_TRUE(cuda::LaunchMappedCopy(*dev, out + i * kInts, v.size() * sizeof(int32_t), s).ok());
        if (i % 8 == 7) {
          ASSERT_TRUE(graphs.Split().ok());
        }
      }
      const Status st = graphs.End();
      ASSERT_TRUE(st.ok()) << st.ToString();
      ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);  // s does not wait for the legacy stream's copy
      std::vector<int32_t> got(static_cast<size_t>(kSlices * kInts));
      ASSERT_EQ(cudaMemcpy(got.data(), out, got.size() * sizeof(int32_t), cudaMemcpyDeviceToHost), cudaSuccess);
      for (int i = 0; i < kSlices; ++i) {
        for (int j = 0; j < kInts; ++j) {
          ASSERT_EQ(got[static_cast<size_t>(i * kInts + j)], pass * 100000 + i * 1000 + j)
              << "pass " << pass << " slice " << i;
        }
      }
    }
    // Four slots per lap: a gap (and so a segment end) every fourth stage at least.
    EXPECT_GE(graphs.segments(), 3 * kSlices / 4);
    EXPECT_LT(graphs.instantiations(), graphs.segments());
    ASSERT_EQ(cudaFree(out), cudaSuccess);
  }
  ASSERT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

// A call the recording cannot hold, made outside a CaptureGap, loses that segment's work: End
// says so instead of returning as if it had run, and the stream works afterwards.
TEST(CudaStreamGraphs, AForbiddenCallInsideARecordingIsReported) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  {
    cuda::StreamGraphs graphs;
    graphs.Init(s);
    ASSERT_TRUE(graphs.Begin().ok());
    EXPECT_NE(cudaStreamSynchronize(s), cudaSuccess);  // waiting on a stream being recorded
    (void)cudaGetLastError();
    const Status st = graphs.End();
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    // Within a gap the same wait is fine.
    ASSERT_TRUE(graphs.Begin().ok());
    {
      cuda::CaptureGap gap;
      EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    }
    EXPECT_TRUE(graphs.End().ok());
  }
  ASSERT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

struct Steps {
  std::vector<std::vector<float>> logits;  // per decode step, the batch's rows
  int64_t segments = 0;
};

// Three sequences (one long enough for a decode KV budget to choose) decoded together for 20
// steps; `tiered` adds a host tier and a budget, so steps fetch blocks and read scores back
// mid-pass.
Steps DecodeSteps(Toggle graphs, bool tiered) {
  Steps r;
  EngineOptions o;
  o.model = "synthetic:smollm2-135m";
  o.backend.device = Device::kCuda;
  o.backend.cuda_graphs = graphs;
  o.kv_tokens = 8192;
  if (tiered) {
    o.host_kv_tokens = 16384;
    o.decode_kv_budget = 256;
    o.decode_kv_gamma = 0.9;
  }
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  if (!e.ok()) return r;
  const int vocab = (*e)->config().vocab_size;
  const int lens[] = {3000, 70, 5};
  for (int i = 0; i < 3; ++i) {
    auto p = (*e)->Prefill(i + 1, RandomIds(lens[i], vocab, 30 + i));
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return r;
  }
  for (int k = 0; k < 20; ++k) {
    std::vector<DecodeItem> batch;
    for (int i = 0; i < 3; ++i) batch.push_back({i + 1, static_cast<int32_t>((k * 131 + 7 * i) % vocab)});
    std::vector<float> lg;
    const Status st = (*e)->Decode(batch, &lg);
    EXPECT_TRUE(st.ok()) << st.ToString();
    if (!st.ok()) return r;
    r.logits.push_back(std::move(lg));
  }
  r.segments = dynamic_cast<cuda::CudaBackend&>(*(*e)->backend()).graphs().segments();
  return r;
}

TEST(CudaGraphsDecode, RecordedStepsEqualLaunchedStepsBitForBit) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  for (bool tiered : {false, true}) {
    const Steps launched = DecodeSteps(Toggle::kOff, tiered);
    const Steps recorded = DecodeSteps(Toggle::kAuto, tiered);
    ASSERT_EQ(launched.logits.size(), 20u);
    ASSERT_EQ(recorded.logits.size(), 20u);
    EXPECT_EQ(launched.segments, 0);
    // Each decode pass is recorded (several segments each: layer splits, and with the budget
    // the score read-backs and fetch waits between them).
    EXPECT_GE(recorded.segments, 20 * 2) << (tiered ? "tiered" : "dense");
    for (size_t k = 0; k < launched.logits.size(); ++k) {
      ASSERT_EQ(launched.logits[k].size(), recorded.logits[k].size());
      EXPECT_EQ(0, std::memcmp(launched.logits[k].data(), recorded.logits[k].data(),
                               launched.logits[k].size() * sizeof(float)))
          << (tiered ? "tiered" : "dense") << " step " << k;
    }
  }
}

}  // namespace
}  // namespace slim
