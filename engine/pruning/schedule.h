// SlimInfer pruning schedules: stages (layer, keep) with keep in tokens or as a fraction of the
// prompt, the block / token-unit / query-window parameters, validation, and resolution of a
// schedule against one prompt length into per-stage block counts and per-layer token counts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace slim {

struct PruneStage {
  int layer = 0;        // prune at this layer (0-based), after its QKV projection and RoPE
  double keep = 0.0;    // tokens to keep (>= 1) or, when fraction, a fraction of the prompt
  bool fraction = false;
};

struct PruningConfig {
  std::vector<PruneStage> stages;
  int block_tokens = 64;
  int unit_tokens = 8;
  int query_window = 4;
  bool after_attention = false;  // variant: prune after the layer's attention instead of before
  // Variant: score blocks by the window queries' softmax attention mass ("score=attn";
  // engine/pruning/block_scorer.h) instead of the paper's |mean q . mean k|.
  bool attention_scores = false;

  // InvalidArgument naming the stage: layers strictly increasing inside [1, n_layers), keeps
  // strictly decreasing (in tokens when all stages use one kind), at least two blocks kept,
  // unit divides block, window >= 1.
  Status Validate(int n_layers) const;
  // "10:0.25,20:1024,window=32,unit=8,after,score=attn": stages (fractions when the value has a '.',
  // tokens otherwise), then optional parameters (block size is the KV block size).
  std::string ToString() const;
  static StatusOr<PruningConfig> Parse(const std::string& text);
};

enum class PruningMode { kOff, kDefault, kExplicit };

struct PruningRequest {
  PruningMode mode = PruningMode::kOff;
  PruningConfig config;  // used when mode == kExplicit
  // Decode KV budget in prompt tokens per layer that each segment attends over in decode
  // (engine/pruning/decode_selection.h); 0 = every block, -1 = the engine's default.
  int64_t decode_kv_budget = -1;
};

// A schedule resolved for one prompt: stages that apply (a stage keeping >= the tokens alive
// is dropped; prompts shorter than the first keep run dense).
struct ResolvedStage {
  int layer = 0;
  int64_t keep_blocks = 0;
};

struct ResolvedSchedule {
  std::vector<ResolvedStage> stages;
  int block_tokens = 64;
  int unit_tokens = 8;
  int query_window = 4;
  bool after_attention = false;
  bool attention_scores = false;
  bool empty() const { return stages.empty(); }
};

// The paper's proportions for a model of `n_layers`: prune at floor(n/3), 2 floor(n/3) and
// floor(15n/16) (LLaMA-3.1: 10, 20, 30; Qwen2.5: 9, 18, 26) keeping 1/4, 1/8 and 1/16 of the prompt.
PruningConfig PaperSchedule(int n_layers);

// The default schedule for a model: chosen by the quality harness where we measured the model
// (bench/quality.md, "Pruning quality": SmolLM2-135M, Qwen2.5-Coder-0.5B and -1.5B), the
// paper's proportions otherwise.
// `model_name` is GGUF general.name (case-insensitive match).
PruningConfig DefaultScheduleFor(const std::string& model_name, int n_layers);

ResolvedSchedule ResolveSchedule(const PruningConfig& config, int64_t prompt_tokens);

// Tokens alive at each layer after pruning a prompt of `prompt_tokens` with `s` (the
// tokens each layer's KV holds). Exact: block selection keeps whole blocks, the last block
// may be ragged and is always kept.
std::vector<int64_t> TokensPerLayer(const ResolvedSchedule& s, int64_t prompt_tokens, int n_layers);

struct PruningSummary {
  bool applied = false;
  int64_t prompt_tokens = 0;
  struct Stage {
    int layer = 0;
    int64_t tokens_kept = 0;
  };
  std::vector<Stage> stages;
  size_t kv_bytes = 0;        // prompt KV actually stored
  size_t dense_kv_bytes = 0;  // what the dense prefill would store
};

}  // namespace slim
