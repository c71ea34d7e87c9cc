// The table of known GGUF metadata keys and their types.
#include "engine/model/known_metadata.h"

#include <string>
#include <string_view>

#include "engine/gguf/gguf_file.h"

namespace slim {
namespace {

enum class Kind {
  kUint,         // a non-negative integer
  kFloat,        // a number
  kBool,
  kString,
  kStrings,      // an array of strings
  kTokenStrings, // an array of strings, one per token (the vocabulary itself)
  kTokenInts,    // an array of integers, one per token
  kTokenFloats,  // an array of numbers, one per token
  kTokenId,      // an integer in [0, number of tokens)
};

struct Known {
  std::string_view key;  // "{arch}." is the architecture's prefix
  Kind kind;
};

constexpr Known kKnown[] = {
    {"general.architecture", Kind::kString},
    {"general.name", Kind::kString},
    {"general.alignment", Kind::kUint},
    {"general.file_type", Kind::kUint},
    {"general.quantization_version", Kind::kUint},
    {"general.type", Kind::kString},
    {"general.basename", Kind::kString},
    {"general.finetune", Kind::kString},
    {"general.size_label", Kind::kString},
    {"general.license", Kind::kString},
    {"general.languages", Kind::kStrings},
    {"general.tags", Kind::kStrings},

    {"{arch}.block_count", Kind::kUint},
    {"{arch}.context_length", Kind::kUint},
    {"{arch}.embedding_length", Kind::kUint},
    {"{arch}.feed_forward_length", Kind::kUint},
    {"{arch}.vocab_size", Kind::kUint},
    {"{arch}.attention.head_count", Kind::kUint},
    {"{arch}.attention.head_count_kv", Kind::kUint},
    {"{arch}.attention.key_length", Kind::kUint},
    {"{arch}.attention.value_length", Kind::kUint},
    {"{arch}.attention.layer_norm_rms_epsilon", Kind::kFloat},
    {"{arch}.attention.layer_norm_epsilon", Kind::kFloat},
    {"{arch}.attention.sliding_window", Kind::kUint},
    {"{arch}.expert_count", Kind::kUint},
    {"{arch}.expert_used_count", Kind::kUint},
    {"{arch}.rope.dimension_count", Kind::kUint},
    {"{arch}.rope.freq_base", Kind::kFloat},
    {"{arch}.rope.scale_linear", Kind::kFloat},
    {"{arch}.rope.scaling.type", Kind::kString},
    {"{arch}.rope.scaling.factor", Kind::kFloat},
    {"{arch}.rope.scaling.attn_factor", Kind::kFloat},
    {"{arch}.rope.scaling.original_context_length", Kind::kUint},
    {"{arch}.rope.scaling.low_freq_factor", Kind::kFloat},
    {"{arch}.rope.scaling.high_freq_factor", Kind::kFloat},
    {"{arch}.rope.scaling.finetuned", Kind::kBool},

    {"tokenizer.ggml.model", Kind::kString},
    {"tokenizer.ggml.pre", Kind::kString},
    {"tokenizer.ggml.tokens", Kind::kTokenStrings},
    {"tokenizer.ggml.token_type", Kind::kTokenInts},
    {"tokenizer.ggml.scores", Kind::kTokenFloats},
    {"tokenizer.ggml.merges", Kind::kStrings},
    {"tokenizer.ggml.token_type_count", Kind::kUint},
    {"tokenizer.ggml.bos_token_id", Kind::kTokenId},
    {"tokenizer.ggml.eos_token_id", Kind::kTokenId},
    {"tokenizer.ggml.unknown_token_id", Kind::kTokenId},
    {"tokenizer.ggml.padding_token_id", Kind::kTokenId},
    {"tokenizer.ggml.seperator_token_id", Kind::kTokenId},  // sic: llama.cpp's spelling
    {"tokenizer.ggml.cls_token_id", Kind::kTokenId},
    {"tokenizer.ggml.mask_token_id", Kind::kTokenId},
    {"tokenizer.ggml.eot_token_id", Kind::kTokenId},
    {"tokenizer.ggml.eom_token_id", Kind::kTokenId},
    {"tokenizer.ggml.add_bos_token", Kind::kBool},
    {"tokenizer.ggml.add_eos_token", Kind::kBool},
    {"tokenizer.ggml.add_sep_token", Kind::kBool},
    {"tokenizer.ggml.add_space_prefix", Kind::kBool},
    {"tokenizer.ggml.remove_extra_whitespaces", Kind::kBool},
    {"tokenizer.chat_template", Kind::kString},
};

Status KeyError(const gguf::GgufFile& f, const std::string& key, const std::string& what) {
  return InvalidArgumentError(f.path() + ": metadata key '" + key + "' " + what);
}

Status CheckOne(const gguf::GgufFile& f, const std::string& key, Kind kind, int64_t n_tokens) {
  auto count = [&](size_t n) -> Status {
    if (n_tokens < 0 || static_cast<int64_t>(n) == n_tokens) return OkStatus();
    return KeyError(f, key, "has " + std::to_string(n) + " entries, but 'tokenizer.ggml.tokens' has " +
                                std::to_string(n_tokens) + " tokens");
  };
  switch (kind) {
    case Kind::kUint: {
      StatusOr<int64_t> v = f.GetInt(key);
      if (!v.ok()) return v.status();
      if (*v < 0) return KeyError(f, key, "= " + std::to_string(*v) + " is out of range (must not be negative)");
      return OkStatus();
    }
    case Kind::kFloat: return f.GetFloat(key).status();
    case Kind::kBool: return f.GetBool(key).status();
    case Kind::kString: return f.GetString(key).status();
    case Kind::kStrings:
    case Kind::kTokenStrings: return f.GetStringArray(key).status();
    case Kind::kTokenInts: {
      StatusOr<std::vector<int64_t>> v = f.GetIntArray(key);
      if (!v.ok()) return v.status();
      return count(v->size());
    }
    case Kind::kTokenFloats: {
      StatusOr<std::vector<double>> v = f.GetFloatArray(key);
      if (!v.ok()) return v.status();
      return count(v->size());
    }
    case Kind::kTokenId: {
      StatusOr<int64_t> v = f.GetInt(key);
      if (!v.ok()) return v.status();
      if (*v < 0 || (n_tokens >= 0 && *v >= n_tokens)) {
        return KeyError(f, key, "= " + std::to_string(*v) + " is not a token id (the vocabulary has " +
                                    (n_tokens >= 0 ? std::to_string(n_tokens) : std::string("no")) + " tokens)");
      }
      return OkStatus();
    }
  }
  return OkStatus();
}

}  // namespace

Status CheckKnownMetadata(const gguf::GgufFile& file) {
  std::string arch;
  if (file.Find("general.architecture") != nullptr) {
    StatusOr<std::string> a = file.GetString("general.architecture");
    if (!a.ok()) return a.status();
    arch = *a;
  }
  int64_t n_tokens = -1;  // unknown: no per-token length rule
  if (file.Find("tokenizer.ggml.tokens") != nullptr) {
    StatusOr<std::vector<std::string>> tokens = file.GetStringArray("tokenizer.ggml.tokens");
    if (!tokens.ok()) return tokens.status();
    n_tokens = static_cast<int64_t>(tokens->size());
  }
  for (const Known& k : kKnown) {
    std::string key(k.key);
    if (key.starts_with("{arch}.")) {
      if (arch.empty()) continue;
      key = arch + key.substr(6);
    }
    if (file.Find(key) == nullptr) continue;
    SLIM_RETURN_IF_ERROR(CheckOne(file, key, k.kind, n_tokens));
  }
  return OkStatus();
}

}  // namespace slim
