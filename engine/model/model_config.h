// LLaMA-family hyperparameters, read from GGUF metadata (or set for synthetic models) and
// validated. Knows nothing of weights or backends.
#pragma once

#include <cstdint>
#include <string>

#include "engine/core/status.h"

namespace slim {
namespace gguf { class GgufFile; }

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  float factor = 1.0f;             // linear and llama3
  float low_freq_factor = 1.0f;    // llama3
  float high_freq_factor = 4.0f;   // llama3
  int64_t original_context = 8192; // llama3: original_max_position_embeddings
};

struct ModelConfig {
  std::string arch = "llama";
  std::string name;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int d_model = 0;        // embedding_length
  int d_ff = 0;           // feed_forward_length
  int head_dim = 0;       // d_model / n_heads unless the file says otherwise
  bool head_dim_explicit = false;  // head_dim given (attention.key_length): d_model need not
                                   // equal n_heads * head_dim
  int rope_dim = 0;       // rotary dimensions (<= head_dim)
  int vocab_size = 0;
  int context_length = 0;
  float rope_theta = 10000.0f;
  float rms_eps = 1e-5f;
  RopeScaling rope_scaling;
  bool tied_embeddings = false;  // no output.weight: the LM head reuses token_embd

  // InvalidArgument naming the first field out of range.
  Status Validate() const;
};

// Reads `<arch>.*` keys; arch must be "llama" (or another LLaMA-family arch we support).
// The error names the key and the file.
StatusOr<ModelConfig> ConfigFromGguf(const gguf::GgufFile& file);

}  // namespace slim
