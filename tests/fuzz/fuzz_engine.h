// Shared by the fuzz targets that need the real default model: a trap for broken invariants
// (libFuzzer reports it as a crash with the input) and the engine, loaded once per process.
#pragma once

#include <cstdio>
#include <memory>

#include "engine/engine.h"

namespace slim::fuzz {

inline void Check(bool ok) {
  if (!ok) __builtin_trap();
}

// The default model on the CPU backend with a small KV cache (only its tokenizer, chat template
// and limits are used).
inline const Engine& TheEngine() {
  static const std::unique_ptr<Engine> engine = [] {
    EngineOptions o;
    o.model = SLIM_DEFAULT_MODEL;
    o.backend.threads = 1;
    o.kv_tokens = 256;
    o.host_kv_gib = 0;
    auto e = Engine::Create(o);
    if (!e.ok()) std::fprintf(stderr, "cannot load %s: %s\n", o.model.c_str(), e.status().ToString().c_str());
    Check(e.ok());
    return std::move(*e);
  }();
  return *engine;
}

}  // namespace slim::fuzz
