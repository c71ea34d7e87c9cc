// LLaMA-family hyperparameters, read from GGUF metadata (or set for synthetic models) and
// validated; ConfigFromGguf first checks every metadata key the engine knows (known_metadata.h). Knows nothing of weights or backends.
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
  // Q, K and V projections carry biases (attn_{q,k,v}.bias): always for qwen2, for the other
  // archs when the file holds them.
  bool qkv_bias = false;
  // RoPE rotates dimension pairs (i, i + rope_dim / 2) (GPT-NeoX style: qwen2, whose GGUF
  // weights are stored as trained) instead of (2i, 2i + 1) (llama's converter permutes Q and K
  // for that). The loader permutes such Q/K rows into the adjacent-pair layout, so every backend
  // runs one RoPE: scores q.k are unchanged by the same permutation of q and k.
  bool rope_neox = false;
  // > 0: some layers attend only to the last sliding_window positions (Hugging Face mistral and
  // qwen2 configs). The layer loop attends to the whole context, which is the same only while
  // the context is at most this long: CheckSlidingWindow refuses longer ones.
  int sliding_window = 0;

  // InvalidArgument naming the first field out of range.
  Status Validate() const;
  // InvalidArgument naming sliding_window when a sliding window is shorter than `context` tokens.
  Status CheckSlidingWindow(int64_t context) const;
};

// What each field is called in Validate's messages: struct field names by default; the
// readers of GGUF metadata and config.json substitute their keys.
struct ConfigFieldNames {
  std::string n_layers = "n_layers";
  std::string n_heads = "n_heads";
  std::string n_kv_heads = "n_kv_heads";
  std::string d_model = "d_model";
  std::string d_ff = "d_ff";
  std::string head_dim = "head_dim";
  std::string rope_dim = "rope_dim";
  std::string vocab_size = "vocab_size";
  std::string context_length = "context_length";
  std::string rope_theta = "rope_theta";
  std::string rms_eps = "rms_eps";
  std::string rope_factor = "rope_scaling.factor";
  std::string rope_low = "rope_scaling.low_freq_factor";
  std::string rope_high = "rope_scaling.high_freq_factor";
  std::string rope_orig_ctx = "rope_scaling.original_context";
};

// ModelConfig::Validate's range rules, naming fields by `names`.
Status ValidateConfig(const ModelConfig& c, const ConfigFieldNames& names);

// Reads `<arch>.*` keys; arch must be "llama" (or another LLaMA-family arch we support).
// The error names the key and the file.
StatusOr<ModelConfig> ConfigFromGguf(const gguf::GgufFile& file);

}  // namespace slim
