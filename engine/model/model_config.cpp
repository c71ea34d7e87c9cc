// ModelConfig validation and its construction from GGUF `<arch>.*` metadata. One set of range
// rules serves both: Validate() names struct fields, ConfigFromGguf names the GGUF keys and file.
#include "engine/model/model_config.h"

#include <climits>
#include <cmath>
#include <string>
#include <string_view>

#include "engine/gguf/gguf_file.h"
#include "engine/model/known_metadata.h"

namespace slim {
namespace {

// Architectures whose hyperparameters use exactly the llama key set. qwen2 differs in its
// tensors (QKV biases) and RoPE pairing, both flagged in the config for the loader.
constexpr std::string_view kSupportedArchs[] = {"llama", "mistral", "qwen2"};


std::string Q(const std::string& name) { return "'" + name + "'"; }

Status CheckRange(const std::string& name, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return InvalidArgumentError(Q(name) + " = " + std::to_string(v) + " is out of range [" +
                                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return OkStatus();
}

std::string FloatStr(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

Status CheckPositiveFinite(const std::string& name, double v) {
  if (!(v > 0.0) || !std::isfinite(v)) {
    return InvalidArgumentError(Q(name) + " = " + FloatStr(v) + " must be positive and finite");
  }
  return OkStatus();
}

}  // namespace

Status ValidateConfig(const ModelConfig& c, const ConfigFieldNames& n) {
  SLIM_RETURN_IF_ERROR(CheckRange(n.n_layers, c.n_layers, 1, 512));
  SLIM_RETURN_IF_ERROR(CheckRange(n.n_heads, c.n_heads, 1, 1024));
  SLIM_RETURN_IF_ERROR(CheckRange(n.n_kv_heads, c.n_kv_heads, 1, c.n_heads));
  if (c.n_heads % c.n_kv_heads != 0) {
    return InvalidArgumentError(Q(n.n_kv_heads) + " = " + std::to_string(c.n_kv_heads) +
                                " does not divide " + Q(n.n_heads) + " = " + std::to_string(c.n_heads));
  }
  SLIM_RETURN_IF_ERROR(CheckRange(n.d_model, c.d_model, 1, 1 << 17));
  if (!c.head_dim_explicit && c.d_model % c.n_heads != 0) {
    return InvalidArgumentError(Q(n.d_model) + " = " + std::to_string(c.d_model) +
                                " is not a multiple of " + Q(n.n_heads) + " = " +
                                std::to_string(c.n_heads));
  }
  SLIM_RETURN_IF_ERROR(CheckRange(n.head_dim, c.head_dim, 2, 512));
  if (c.head_dim % 2 != 0) {
    return InvalidArgumentError(Q(n.head_dim) + " = " + std::to_string(c.head_dim) + " must be even");
  }
  if (!c.head_dim_explicit && static_cast<int64_t>(c.n_heads) * c.head_dim != c.d_model) {
    return InvalidArgumentError(Q(n.d_model) + " = " + std::to_string(c.d_model) + " != " +
                                Q(n.n_heads) + " * " + Q(n.head_dim) + " = " +
                                std::to_string(c.n_heads) + " * " + std::to_string(c.head_dim));
  }
  SLIM_RETURN_IF_ERROR(CheckRange(n.rope_dim, c.rope_dim, 2, c.head_dim));
  if (c.rope_dim % 2 != 0) {
    return InvalidArgumentError(Q(n.rope_dim) + " = " + std::to_string(c.rope_dim) + " must be even");
  }
  SLIM_RETURN_IF_ERROR(CheckRange(n.d_ff, c.d_ff, 1, 1 << 20));
  SLIM_RETURN_IF_ERROR(CheckRange(n.vocab_size, c.vocab_size, 1, 1 << 22));
  SLIM_RETURN_IF_ERROR(CheckRange(n.context_length, c.context_length, 1, 1 << 24));
  SLIM_RETURN_IF_ERROR(CheckPositiveFinite(n.rope_theta, c.rope_theta));
  if (!(c.rms_eps > 0.0f && c.rms_eps < 1.0f)) {
    return InvalidArgumentError(Q(n.rms_eps) + " = " + FloatStr(c.rms_eps) + " is not in (0, 1)");
  }
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type != RopeScaling::Type::kNone) {
    SLIM_RETURN_IF_ERROR(CheckPositiveFinite(n.rope_factor, rs.factor));
  }
  if (rs.type == RopeScaling::Type::kLlama3) {
    SLIM_RETURN_IF_ERROR(CheckPositiveFinite(n.rope_low, rs.low_freq_factor));
    SLIM_RETURN_IF_ERROR(CheckPositiveFinite(n.rope_high, rs.high_freq_factor));
    if (!(rs.high_freq_factor > rs.low_freq_factor)) {
      return InvalidArgumentError(Q(n.rope_high) + " = " + FloatStr(rs.high_freq_factor) +
                                  " must be greater than " + Q(n.rope_low) + " = " +
                                  FloatStr(rs.low_freq_factor));
    }
    SLIM_RETURN_IF_ERROR(CheckRange(n.rope_orig_ctx, rs.original_context, 1, 1 << 24));
  }
  return OkStatus();
}

namespace {

// Reads GGUF metadata for one file, turning "absent" into defaults or errors naming the key.
class KeyReader {
 public:
  explicit KeyReader(const gguf::GgufFile& f) : f_(f) {}

  // An integer key into *out; keeps *out when the key is absent and not required.
  Status Int(const std::string& key, bool required, int* out) const {
    StatusOr<int64_t> v = f_.GetInt(key);
    if (!v.ok()) return Absent(key, required, v.status());
    if (*v < INT_MIN || *v > INT_MAX) {
      return InvalidArgumentError(f_.path() + ": " + Q(key) + " = " + std::to_string(*v) +
                                  " is out of range");
    }
    *out = static_cast<int>(*v);
    return OkStatus();
  }
  Status Int64(const std::string& key, bool required, int64_t* out) const {
    StatusOr<int64_t> v = f_.GetInt(key);
    if (!v.ok()) return Absent(key, required, v.status());
    *out = *v;
    return OkStatus();
  }
  Status Float(const std::string& key, bool required, float* out) const {
    StatusOr<double> v = f_.GetFloat(key);
    if (!v.ok()) return Absent(key, required, v.status());
    *out = static_cast<float>(*v);
    return OkStatus();
  }
  Status String(const std::string& key, bool required, std::string* out) const {
    StatusOr<std::string> v = f_.GetString(key);
    if (!v.ok()) return Absent(key, required, v.status());
    *out = std::move(*v);
    return OkStatus();
  }

 private:
  Status Absent(const std::string& key, bool required, const Status& s) const {
    if (s.code() != StatusCode::kNotFound) return s;  // present with the wrong type
    if (!required) return OkStatus();
    return InvalidArgumentError(f_.path() + ": required metadata key " + Q(key) + " is missing");
  }
  const gguf::GgufFile& f_;
};

}  // namespace

Status ModelConfig::Validate() const {
  if (sliding_window < 0) return InvalidArgumentError("'sliding_window' = " + std::to_string(sliding_window) + " is negative");
  return ValidateConfig(*this, ConfigFieldNames{});
}

Status ModelConfig::CheckSlidingWindow(int64_t context) const {
  if (sliding_window == 0 || context <= sliding_window) return OkStatus();
  return InvalidArgumentError("sliding-window attention ('sliding_window' = " + std::to_string(sliding_window) +
                              ") is active for a " + std::to_string(context) +
                              "-token context, and this engine implements full attention only (a context of at most " +
                              std::to_string(sliding_window) + " tokens runs)");
}

StatusOr<ModelConfig> ConfigFromGguf(const gguf::GgufFile& file) {
  SLIM_RETURN_IF_ERROR(CheckKnownMetadata(file));
  const KeyReader keys(file);
  const std::string& path = file.path();
  ModelConfig c;
  SLIM_RETURN_IF_ERROR(keys.String("general.architecture", true, &c.arch));
  bool supported = false;
  for (std::string_view a : kSupportedArchs) supported = supported || c.arch == a;
  if (!supported) {
    return InvalidArgumentError(path + ": 'general.architecture' = '" + c.arch +
                                "' is not supported (supported: llama, mistral, qwen2)");
  }
  SLIM_RETURN_IF_ERROR(keys.String("general.name", false, &c.name));

  const std::string p = c.arch + ".";
  ConfigFieldNames n;
  n.n_layers = p + "block_count";
  n.d_model = p + "embedding_length";
  n.d_ff = p + "feed_forward_length";
  n.n_heads = p + "attention.head_count";
  n.n_kv_heads = p + "attention.head_count_kv";
  n.context_length = p + "context_length";
  n.rope_theta = p + "rope.freq_base";
  n.rms_eps = p + "attention.layer_norm_rms_epsilon";
  n.rope_dim = p + "rope.dimension_count";
  n.head_dim = p + "attention.key_length";
  n.vocab_size = p + "vocab_size";
  n.rope_factor = p + "rope.scaling.factor";
  n.rope_low = p + "rope.scaling.low_freq_factor";
  n.rope_high = p + "rope.scaling.high_freq_factor";
  n.rope_orig_ctx = p + "rope.scaling.original_context_length";

  SLIM_RETURN_IF_ERROR(keys.Int(n.n_layers, true, &c.n_layers));
  SLIM_RETURN_IF_ERROR(keys.Int(n.d_model, true, &c.d_model));
  SLIM_RETURN_IF_ERROR(keys.Int(n.d_ff, true, &c.d_ff));
  SLIM_RETURN_IF_ERROR(keys.Int(n.n_heads, true, &c.n_heads));
  c.n_kv_heads = c.n_heads;
  SLIM_RETURN_IF_ERROR(keys.Int(n.n_kv_heads, false, &c.n_kv_heads));
  SLIM_RETURN_IF_ERROR(keys.Int(n.context_length, true, &c.context_length));
  c.rope_theta = 10000.0f;
  SLIM_RETURN_IF_ERROR(keys.Float(n.rope_theta, false, &c.rope_theta));
  SLIM_RETURN_IF_ERROR(keys.Float(n.rms_eps, true, &c.rms_eps));

  // head_dim: attention.key_length when given, else embedding_length / head_count.
  if (file.Find(n.head_dim) != nullptr) {
    SLIM_RETURN_IF_ERROR(keys.Int(n.head_dim, true, &c.head_dim));
    c.head_dim_explicit = true;
    int value_length = c.head_dim;
    SLIM_RETURN_IF_ERROR(keys.Int(p + "attention.value_length", false, &value_length));
    if (value_length != c.head_dim) {
      return InvalidArgumentError(path + ": '" + p + "attention.value_length' = " +
                                  std::to_string(value_length) + " differs from " + Q(n.head_dim) +
                                  " = " + std::to_string(c.head_dim) + ", which is not supported");
    }
  } else {
    c.head_dim = c.n_heads > 0 ? c.d_model / c.n_heads : 0;
    n.head_dim = "head_dim (" + n.d_model + " / " + n.n_heads + ")";
  }
  c.rope_dim = c.head_dim;
  SLIM_RETURN_IF_ERROR(keys.Int(n.rope_dim, false, &c.rope_dim));

  // vocab: <arch>.vocab_size, else the tokenizer's token list, else token_embd's row count.
  if (file.Find(n.vocab_size) != nullptr) {
    SLIM_RETURN_IF_ERROR(keys.Int(n.vocab_size, true, &c.vocab_size));
  } else if (const gguf::Value* tokens = file.Find("tokenizer.ggml.tokens")) {
    const auto* arr = std::get_if<gguf::Array>(&tokens->v);
    if (arr == nullptr) {
      return InvalidArgumentError(path + ": 'tokenizer.ggml.tokens' is not an array");
    }
    n.vocab_size = "tokenizer.ggml.tokens (length)";
    c.vocab_size = arr->items.size() > static_cast<size_t>(INT_MAX) ? INT_MAX
                                                                     : static_cast<int>(arr->items.size());
  } else if (const gguf::TensorInfo* emb = file.FindTensor("token_embd.weight");
             emb != nullptr && emb->dims.size() == 2) {
    n.vocab_size = "token_embd.weight dims[1]";
    c.vocab_size = emb->dims[1] > INT_MAX ? INT_MAX : static_cast<int>(emb->dims[1]);
  } else {
    return InvalidArgumentError(path + ": cannot determine the vocabulary size: no " +
                                Q(n.vocab_size) + ", 'tokenizer.ggml.tokens' or 'token_embd.weight'");
  }

  // RoPE scaling.
  RopeScaling& rs = c.rope_scaling;
  std::string scaling_type = "none";
  SLIM_RETURN_IF_ERROR(keys.String(p + "rope.scaling.type", false, &scaling_type));
  if (scaling_type == "none") {
    // Older converters wrote only a linear scale factor.
    float legacy = 1.0f;
    SLIM_RETURN_IF_ERROR(keys.Float(p + "rope.scale_linear", false, &legacy));
    if (file.Find(p + "rope.scale_linear") != nullptr && legacy != 1.0f) {
      rs.type = RopeScaling::Type::kLinear;
      rs.factor = legacy;
      n.rope_factor = p + "rope.scale_linear";
    }
  } else if (scaling_type == "linear" || scaling_type == "llama3") {
    rs.type = scaling_type == "linear" ? RopeScaling::Type::kLinear : RopeScaling::Type::kLlama3;
    SLIM_RETURN_IF_ERROR(keys.Float(n.rope_factor, false, &rs.factor));
    SLIM_RETURN_IF_ERROR(keys.Int64(n.rope_orig_ctx, false, &rs.original_context));
    SLIM_RETURN_IF_ERROR(keys.Float(n.rope_low, false, &rs.low_freq_factor));
    SLIM_RETURN_IF_ERROR(keys.Float(n.rope_high, false, &rs.high_freq_factor));
  } else {
    return InvalidArgumentError(path + ": '" + p + "rope.scaling.type' = '" + scaling_type +
                                "' is not supported (supported: none, linear, llama3)");
  }

  c.tied_embeddings = file.FindTensor("output.weight") == nullptr;
  c.qkv_bias = c.arch == "qwen2" || file.FindTensor("blk.0.attn_q.bias") != nullptr ||
               file.FindTensor("blk.0.attn_k.bias") != nullptr || file.FindTensor("blk.0.attn_v.bias") != nullptr;
  c.rope_neox = c.arch == "qwen2";

  Status s = ValidateConfig(c, n);
  if (!s.ok()) return s.WithPrefix(path);
  return c;
}

}  // namespace slim
