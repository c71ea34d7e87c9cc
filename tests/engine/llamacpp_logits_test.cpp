// The real default model against two independent references: llama.cpp (fixtures from
// scripts/make-fixtures.py: last-position logits on prompts of 16 to 1000 tokens and 32-token
// greedy continuations) and a float64 numpy forward pass over the same dequantized weights
// (scripts/numpy-forward.py --write).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "tests/engine/llamacpp_check.h"

namespace slim {
namespace {

using json = nlohmann::json;
using testing::CheckGreedy;
using testing::CheckLogits;
using testing::LoadFixtureJson;

std::string FixtureDir() { return std::string(SLIM_SOURCE_DIR) + "/tests/fixtures/llamacpp"; }

std::unique_ptr<Engine>& SharedEngine() {
  static std::unique_ptr<Engine> engine = testing::MakeModelEngine(SLIM_DEFAULT_MODEL, "f32", "scripts/fetch-model.sh");
  return engine;
}

// The same model with an f16 KV cache (llama.cpp's own default).
std::unique_ptr<Engine>& SharedF16Engine() {
  static std::unique_ptr<Engine> engine = testing::MakeModelEngine(SLIM_DEFAULT_MODEL, "f16", "scripts/fetch-model.sh");
  return engine;
}

TEST(LlamaCppLogits, LastPositionLogitsAgree) { CheckLogits(SharedEngine().get(), FixtureDir(), true, "kv f32", 5); }

TEST(LlamaCppLogits, LastPositionLogitsAgreeWithF16KvCache) {
  CheckLogits(SharedF16Engine().get(), FixtureDir(), false, "kv f16", 5);
}

TEST(LlamaCppLogits, GreedyContinuationsMatch) { CheckGreedy(SharedEngine().get(), FixtureDir(), 4); }

TEST(LlamaCppLogits, GreedyContinuationsMatchWithF16KvCache) { CheckGreedy(SharedF16Engine().get(), FixtureDir(), 4); }

// The f16 cache holds half the bytes and moves the logits far less than llama.cpp's arithmetic
// differs from ours; a KV type the CPU does not have is refused by name.
TEST(F16KvCache, HalvesTheCacheAndStaysCloseToF32) {
  auto& e32 = SharedEngine();
  auto& e16 = SharedF16Engine();
  ASSERT_TRUE(e32 && e16);
  json j = LoadFixtureJson(FixtureDir() + "/logits.json");
  const auto& c = j["cases"].back();  // the longest prompt
  const std::vector<int32_t> ids = c["prompt_ids"].get<std::vector<int32_t>>();
  auto a = e32->Prefill(1, ids);
  auto b = e16->Prefill(1, ids);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(e32->Release(1).ok());
  ASSERT_TRUE(e16->Release(1).ok());
  EXPECT_EQ(b->kv_bytes * 2, a->kv_bytes);
  double max_abs = 0.0;
  for (size_t i = 0; i < a->logits.size(); ++i)
    max_abs = std::max(max_abs, std::fabs(static_cast<double>(a->logits[i]) - b->logits[i]));
  std::printf("[f16 kv] %zu tokens: KV %zu vs %zu bytes; logits max |f16 - f32| %.4f\n", ids.size(), b->kv_bytes,
              a->kv_bytes, max_abs);
  EXPECT_GT(max_abs, 0.0);  // the cache really is f16
  EXPECT_LT(max_abs, 0.1);

  auto bad = ParseKvCache("int4");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("int4"), std::string::npos) << bad.status().ToString();
}

}  // namespace
}  // namespace slim
