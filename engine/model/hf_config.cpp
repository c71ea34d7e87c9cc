// config.json -> ModelConfig: typed key reads naming the key and file, RoPE parameters in both
// the transformers v4 (rope_theta + rope_scaling) and v5 (rope_parameters) forms, the sliding
// window as transformers applies it, and the refusal of every key not accounted for.
#include "engine/model/hf_config.h"

#include <climits>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string_view>

namespace slim {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxConfigBytes = size_t{16} << 20;

// Keys of PretrainedConfig and of the three model configs that do not change the forward pass
// of a causal LM at inference (token ids of special tokens, training-only settings, bookkeeping).
constexpr std::string_view kInertKeys[] = {
    "_name_or_path", "transformers_version", "dtype", "torch_dtype", "use_cache", "initializer_range",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "attention_dropout", "output_attentions", "output_hidden_states", "return_dict", "use_return_dict",
    "torchscript", "tokenizer_class", "id2label", "label2id", "problem_type", "task_specific_params",
    "finetuning_task", "prefix", "is_encoder_decoder", "is_decoder", "add_cross_attention",
    "tie_encoder_decoder", "chunk_size_feed_forward", "keys_to_ignore_at_inference",
    // The llama classes' tensor-parallel split of the projections during pretraining: the same
    // products, only partitioned.
    "pretraining_tp",
    // SmolLM2's Hub config: markers for other runtimes.
    "is_llama_config", "transformers.js_config",
};

std::string Q(std::string_view key) {
  std::string s(1, '\'');
  s.append(key);
  s += '\'';
  return s;
}

std::string Kind(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a bool";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "an unsupported value";
  }
}

// Typed reads of one JSON object (config.json or a nested rope object), each key marked as used;
// `prefix` qualifies nested keys in messages ("rope_scaling.factor"). Optional keys that are
// absent or null keep *out.
class Keys {
 public:
  Keys(const json& obj, std::string path, std::string prefix = "")
      : obj_(obj), path_(std::move(path)), prefix_(std::move(prefix)) {}

  bool Present(const std::string& key) const { return obj_.contains(key) && !obj_[key].is_null(); }
  Status Error(const std::string& key, const std::string& what) const {
    return InvalidArgumentError(path_ + ": " + Q(prefix_ + key) + " " + what);
  }

  Status Int(const std::string& key, bool required, int* out) {
    SLIM_ASSIGN_OR_RETURN(const json* v, Get(key, required));
    if (v == nullptr) return OkStatus();
    if (!v->is_number_integer()) return Error(key, "is " + Kind(*v) + ", expected an integer");
    if (v->is_number_unsigned() ? v->get<uint64_t>() > INT_MAX : v->get<int64_t>() < INT_MIN) {
      return Error(key, "= " + v->dump() + " is out of range");
    }
    *out = static_cast<int>(v->get<int64_t>());
    return OkStatus();
  }
  Status Int64(const std::string& key, bool required, int64_t* out) {
    int v = 0;
    SLIM_RETURN_IF_ERROR(Int(key, required, &v));
    if (Present(key)) *out = v;
    return OkStatus();
  }
  Status Float(const std::string& key, bool required, float* out) {
    SLIM_ASSIGN_OR_RETURN(const json* v, Get(key, required));
    if (v == nullptr) return OkStatus();
    if (!v->is_number()) return Error(key, "is " + Kind(*v) + ", expected a number");
    *out = v->get<float>();
    return OkStatus();
  }
  Status Bool(const std::string& key, bool required, bool* out) {
    SLIM_ASSIGN_OR_RETURN(const json* v, Get(key, required));
    if (v == nullptr) return OkStatus();
    if (!v->is_boolean()) return Error(key, "is " + Kind(*v) + ", expected true or false");
    *out = v->get<bool>();
    return OkStatus();
  }
  Status String(const std::string& key, bool required, std::string* out) {
    SLIM_ASSIGN_OR_RETURN(const json* v, Get(key, required));
    if (v == nullptr) return OkStatus();
    if (!v->is_string()) return Error(key, "is " + Kind(*v) + ", expected a string");
    *out = v->get<std::string>();
    return OkStatus();
  }
  // A key that must be absent, null, or equal to `inert` (its value where the forward pass is
  // the one implemented here); `why` says what another value would need.
  Status MustBe(const std::string& key, const json& inert, const std::string& why) {
    used_.insert(key);
    if (!Present(key) || obj_[key] == inert) return OkStatus();
    return Error(key, "= " + obj_[key].dump() + " is not supported (" + why + ")");
  }
  void Use(const std::string& key) { used_.insert(key); }

  // The first key neither read nor in `inert`, refused by name.
  Status RefuseUnused(std::span<const std::string_view> inert, const std::string& arch) const {
    for (const auto& [key, _] : obj_.items()) {
      if (used_.count(key) != 0) continue;
      bool ok = false;
      for (std::string_view k : inert) ok = ok || key == k;
      if (!ok) {
        return Error(key, "is not a " + arch + " config key this engine knows; it may change the model's "
                          "computation, so the checkpoint is refused");
      }
    }
    return OkStatus();
  }

 private:
  StatusOr<const json*> Get(const std::string& key, bool required) {
    used_.insert(key);
    if (Present(key)) return &obj_[key];
    if (required) return Error(key, obj_.contains(key) ? "is null, but required" : "is missing (required)");
    return static_cast<const json*>(nullptr);
  }

  const json& obj_;
  std::string path_, prefix_;
  std::set<std::string> used_;
};

// rope_type (or the older "type") and its parameters from the object `ro` named `name`;
// rope_theta too when `with_theta` (transformers v5's rope_parameters).
Status ReadRope(const json& ro, const std::string& path, const std::string& name, bool with_theta, ModelConfig* c) {
  if (!ro.is_object()) {
    return InvalidArgumentError(path + ": " + Q(name) + " is " + Kind(ro) + ", expected an object");
  }
  Keys k(ro, path, name + ".");
  std::string type = "default", legacy;
  SLIM_RETURN_IF_ERROR(k.String("rope_type", false, &type));
  SLIM_RETURN_IF_ERROR(k.String("type", false, &legacy));
  if (!k.Present("rope_type") && k.Present("type")) type = legacy;
  if (k.Present("rope_type") && k.Present("type") && type != legacy) {
    return k.Error("type", "= '" + legacy + "' contradicts 'rope_type' = '" + type + "'");
  }
  if (with_theta) SLIM_RETURN_IF_ERROR(k.Float("rope_theta", false, &c->rope_theta));
  RopeScaling& rs = c->rope_scaling;
  if (type == "default") {
    rs.type = RopeScaling::Type::kNone;
  } else if (type == "linear") {
    rs.type = RopeScaling::Type::kLinear;
    SLIM_RETURN_IF_ERROR(k.Float("factor", true, &rs.factor));
  } else if (type == "llama3") {
    rs.type = RopeScaling::Type::kLlama3;
    SLIM_RETURN_IF_ERROR(k.Float("factor", true, &rs.factor));
    SLIM_RETURN_IF_ERROR(k.Float("low_freq_factor", true, &rs.low_freq_factor));
    SLIM_RETURN_IF_ERROR(k.Float("high_freq_factor", true, &rs.high_freq_factor));
    SLIM_RETURN_IF_ERROR(k.Int64("original_max_position_embeddings", true, &rs.original_context));
  } else {
    return k.Error(k.Present("rope_type") ? "rope_type" : "type",
                   "= '" + type + "' is not supported (supported: default, linear, llama3)");
  }
  // Parameters of other RoPE variants (attention_factor, beta_fast, partial_rotary_factor, ...)
  // change the rotation: refused by name.
  return k.RefuseUnused({}, type + " RoPE");
}

// The sliding window as transformers applies it. mistral: every layer, when sliding_window is
// set. qwen2: only with use_sliding_window, on the layers layer_types marks (by default those
// from max_window_layers on).
Status ReadSlidingWindow(Keys& k, const json& j, ModelConfig* c) {
  int window = 0;
  SLIM_RETURN_IF_ERROR(k.Int("sliding_window", false, &window));
  if (window < 0 || (k.Present("sliding_window") && window == 0)) {
    return k.Error("sliding_window", "= " + std::to_string(window) + " must be positive");
  }
  if (c->arch == "mistral") {
    c->sliding_window = window;
    return OkStatus();
  }
  bool use = false;
  int max_window_layers = 28;  // Qwen2Config's default
  SLIM_RETURN_IF_ERROR(k.Bool("use_sliding_window", false, &use));
  SLIM_RETURN_IF_ERROR(k.Int("max_window_layers", false, &max_window_layers));
  bool any_sliding = false;
  if (k.Present("layer_types")) {
    k.Use("layer_types");
    const json& lt = j["layer_types"];
    if (!lt.is_array() || lt.size() != static_cast<size_t>(c->n_layers)) {
      return k.Error("layer_types", "must be an array of 'num_hidden_layers' = " + std::to_string(c->n_layers) +
                                        " strings");
    }
    for (size_t i = 0; i < lt.size(); ++i) {
      const bool full = lt[i] == "full_attention", sliding = lt[i] == "sliding_attention";
      if (!full && !sliding) {
        return k.Error("layer_types[" + std::to_string(i) + "]",
                       "= " + lt[i].dump() + " is not supported (supported: full_attention, sliding_attention)");
      }
      any_sliding = any_sliding || sliding;
    }
  } else {
    any_sliding = max_window_layers < c->n_layers;
  }
  c->sliding_window = use && window > 0 && any_sliding ? window : 0;
  return OkStatus();
}

// The architecture, from model_type and (when given) architectures.
Status ReadArch(Keys& k, const json& j, ModelConfig* c) {
  std::string model_type;
  SLIM_RETURN_IF_ERROR(k.String("model_type", true, &model_type));
  const char* cls = model_type == "llama"     ? "LlamaForCausalLM"
                    : model_type == "qwen2"   ? "Qwen2ForCausalLM"
                    : model_type == "mistral" ? "MistralForCausalLM"
                                              : nullptr;
  if (cls == nullptr) {
    return k.Error("model_type", "= '" + model_type + "' is not supported (supported: llama, mistral, qwen2)");
  }
  c->arch = model_type;
  if (k.Present("architectures")) {
    k.Use("architectures");
    const json& a = j["architectures"];
    if (!a.is_array() || a.size() != 1 || a[0] != cls) {
      return k.Error("architectures", "= " + a.dump() + " is not supported for model_type '" + model_type +
                                          "' (expected [\"" + cls + "\"])");
    }
  }
  return OkStatus();
}

}  // namespace

StatusOr<ModelConfig> ConfigFromHfJson(std::string_view text, const std::string& path) {
  const json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgumentError(path + ": not valid JSON");
  if (!j.is_object()) return InvalidArgumentError(path + ": is " + Kind(j) + ", expected a JSON object");
  Keys k(j, path);
  ModelConfig c;
  SLIM_RETURN_IF_ERROR(ReadArch(k, j, &c));
  SLIM_RETURN_IF_ERROR(k.Int("hidden_size", true, &c.d_model));
  SLIM_RETURN_IF_ERROR(k.Int("intermediate_size", true, &c.d_ff));
  SLIM_RETURN_IF_ERROR(k.Int("num_hidden_layers", true, &c.n_layers));
  SLIM_RETURN_IF_ERROR(k.Int("num_attention_heads", true, &c.n_heads));
  c.n_kv_heads = c.n_heads;
  SLIM_RETURN_IF_ERROR(k.Int("num_key_value_heads", false, &c.n_kv_heads));
  SLIM_RETURN_IF_ERROR(k.Int("vocab_size", true, &c.vocab_size));
  SLIM_RETURN_IF_ERROR(k.Int("max_position_embeddings", true, &c.context_length));
  SLIM_RETURN_IF_ERROR(k.Float("rms_norm_eps", true, &c.rms_eps));
  c.head_dim = c.n_heads > 0 ? c.d_model / c.n_heads : 0;
  if (k.Present("head_dim")) {
    SLIM_RETURN_IF_ERROR(k.Int("head_dim", true, &c.head_dim));
    c.head_dim_explicit = true;
  }
  c.rope_dim = c.head_dim;
  SLIM_RETURN_IF_ERROR(k.Bool("tie_word_embeddings", false, &c.tied_embeddings));

  // RoPE: v5's rope_parameters, or v4's rope_theta and rope_scaling; not both.
  c.rope_theta = 10000.0f;
  if (k.Present("rope_parameters")) {
    k.Use("rope_parameters");
    for (const char* old : {"rope_theta", "rope_scaling"}) {
      if (k.Present(old)) return k.Error(old, "is given together with 'rope_parameters'; give one");
    }
    SLIM_RETURN_IF_ERROR(ReadRope(j["rope_parameters"], path, "rope_parameters", true, &c));
  } else {
    SLIM_RETURN_IF_ERROR(k.Float("rope_theta", false, &c.rope_theta));
    k.Use("rope_scaling");
    if (k.Present("rope_scaling")) SLIM_RETURN_IF_ERROR(ReadRope(j["rope_scaling"], path, "rope_scaling", false, &c));
  }
  // HF checkpoints store Q and K of every architecture in the rotate-half (GPT-NeoX) layout:
  // the loader reorders their rows (ModelConfig::rope_neox).
  c.rope_neox = true;

  SLIM_RETURN_IF_ERROR(k.MustBe("hidden_act", "silu", "the MLP is SwiGLU with SiLU"));
  SLIM_RETURN_IF_ERROR(k.MustBe("rope_interleaved", false, "Q and K rotate in the rotate-half layout"));
  if (c.arch == "llama") {
    SLIM_RETURN_IF_ERROR(k.MustBe("attention_bias", false, "biases on the attention projections, o_proj's included"));
    SLIM_RETURN_IF_ERROR(k.MustBe("mlp_bias", false, "biases on the MLP projections"));
  } else {
    c.qkv_bias = c.arch == "qwen2";  // Qwen2Attention: q, k and v biases, none on o_proj
    SLIM_RETURN_IF_ERROR(ReadSlidingWindow(k, j, &c));
  }
  if (k.Present("quantization_config")) {
    return k.Error("quantization_config", "is present: quantized safetensors checkpoints are not supported");
  }
  SLIM_RETURN_IF_ERROR(k.RefuseUnused(kInertKeys, c.arch));

  ConfigFieldNames n;
  n.n_layers = "num_hidden_layers";
  n.n_heads = "num_attention_heads";
  n.n_kv_heads = "num_key_value_heads";
  n.d_model = "hidden_size";
  n.d_ff = "intermediate_size";
  n.head_dim = c.head_dim_explicit ? "head_dim" : "head_dim (hidden_size / num_attention_heads)";
  n.rope_dim = n.head_dim;
  n.vocab_size = "vocab_size";
  n.context_length = "max_position_embeddings";
  n.rms_eps = "rms_norm_eps";
  const std::string rope = k.Present("rope_parameters") ? "rope_parameters." : "rope_scaling.";
  n.rope_theta = k.Present("rope_parameters") ? "rope_parameters.rope_theta" : "rope_theta";
  n.rope_factor = rope + "factor";
  n.rope_low = rope + "low_freq_factor";
  n.rope_high = rope + "high_freq_factor";
  n.rope_orig_ctx = rope + "original_max_position_embeddings";
  Status s = ValidateConfig(c, n);
  if (!s.ok()) return s.WithPrefix(path);
  return c;
}

StatusOr<ModelConfig> ConfigFromHfFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(path + ": cannot open (a Hugging Face checkpoint directory needs config.json)");
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes) {
      return InvalidArgumentError(path + ": larger than " + std::to_string(kMaxConfigBytes) + " bytes");
    }
  }
  return ConfigFromHfJson(text, path);
}

}  // namespace slim
