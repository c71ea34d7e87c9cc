// Shared helpers of the engine tests: a small synthetic engine and seeded random token ids.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <vector>

#include "engine/engine.h"

namespace slim::testing {

// synthetic:tiny (3 layers, 64 wide) on the CPU with KV for `kv_tokens` tokens per layer.
inline std::unique_ptr<Engine> TinyEngine(int64_t kv_tokens = 4096) {
  EngineOptions o;
  o.model = "synthetic:tiny";
  o.kv_tokens = kv_tokens;
  o.backend.threads = 2;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

// The default model (SLIM_DEFAULT_MODEL) on the CPU with KV for `kv_tokens` tokens per layer.
inline std::unique_ptr<Engine> DefaultModelEngine(int64_t kv_tokens = 4096, int threads = 2) {
  EngineOptions o;
  o.model = SLIM_DEFAULT_MODEL;
  o.kv_tokens = kv_tokens;
  o.backend.threads = threads;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

inline std::vector<int32_t> RandomIds(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  return ids;
}

}  // namespace slim::testing
