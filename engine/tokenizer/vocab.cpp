// VocabFromGguf: reads the tokenizer.* metadata of a GGUF file into VocabData and validates it
// (array lengths, id ranges, token types). Every error names the key and the file.
#include "engine/tokenizer/vocab.h"

#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/gguf/gguf_file.h"

namespace slim {
namespace {

Status KeyError(const gguf::GgufFile& file, std::string_view key, const std::string& what) {
  return InvalidArgumentError(file.path() + ": tokenizer metadata '" + std::string(key) + "': " + what);
}

// Rewraps a getter failure so the message names the key and the file whatever the parser says.
Status Wrap(const gguf::GgufFile& file, std::string_view key, const Status& s) {
  return Status(s.code(), file.path() + ": tokenizer metadata '" + std::string(key) + "': " + s.message());
}

StatusOr<std::string> RequiredString(const gguf::GgufFile& file, std::string_view key) {
  auto v = file.GetString(key);
  if (!v.ok()) return Wrap(file, key, v.status());
  return std::move(v).value();
}

// Optional string: "" when absent, an error when present with the wrong type.
StatusOr<std::string> OptionalString(const gguf::GgufFile& file, std::string_view key) {
  if (file.Find(key) == nullptr) return std::string();
  return RequiredString(file, key);
}

// Optional token id: -1 when absent; must lie in [0, n_tokens).
StatusOr<int32_t> OptionalId(const gguf::GgufFile& file, std::string_view key, size_t n_tokens) {
  if (file.Find(key) == nullptr) return int32_t{-1};
  auto v = file.GetInt(key);
  if (!v.ok()) return Wrap(file, key, v.status());
  if (*v < 0 || static_cast<uint64_t>(*v) >= n_tokens) {
    return KeyError(file, key, "token id " + std::to_string(*v) + " is out of range (vocabulary has " +
                                   std::to_string(n_tokens) + " tokens)");
  }
  return static_cast<int32_t>(*v);
}

StatusOr<bool> OptionalBool(const gguf::GgufFile& file, std::string_view key, bool dflt) {
  if (file.Find(key) == nullptr) return dflt;
  auto v = file.GetBool(key);
  if (!v.ok()) return Wrap(file, key, v.status());
  return *v;
}

// llama.cpp's pre-tokenizer names that make add_bos default to true when the key is absent.
bool PreDefaultsToBos(const std::string& pre) {
  return pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3" || pre == "falcon-h1" ||
         pre == "pixtral" || pre == "midm-2.0" || pre == "lfm2" || pre == "jina-v5-nano" || pre == "tekken" ||
         pre == "chameleon";
}

// Optional token id with llama.cpp's per-model default: the default applies when the key is
// absent and it lies inside the vocabulary.
StatusOr<int32_t> IdWithDefault(const gguf::GgufFile& file, std::string_view key, size_t n_tokens, int32_t dflt) {
  if (file.Find(key) == nullptr) return dflt >= 0 && static_cast<size_t>(dflt) < n_tokens ? dflt : -1;
  return OptionalId(file, key, n_tokens);
}

// llama.cpp sets RSTRIP on Phi-3's special tokens (chosen by general.name): whitespace after
// them is dropped when they are matched in text. All control, user-defined and unknown tokens
// and </s>, but <unk>, <s> and <|endoftext|>.
std::vector<int32_t> Phi3RstripIds(const gguf::GgufFile& file, const VocabData& v) {
  auto name = file.GetString("general.name");
  if (!name.ok()) return {};
  std::string lower = *name;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.find("phi-3") == std::string::npos && lower.find("phi3") == std::string::npos) return {};
  std::vector<int32_t> ids;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const std::string& t = v.tokens[i];
    const TokenType ty = v.token_types[i];
    const bool special = ty == TokenType::kControl || ty == TokenType::kUserDefined || ty == TokenType::kUnknown;
    if ((special || t == "</s>") && t != "<unk>" && t != "<s>" && t != "<|endoftext|>") {
      ids.push_back(static_cast<int32_t>(i));
    }
  }
  return ids;
}

}  // namespace

StatusOr<VocabData> VocabFromGguf(const gguf::GgufFile& file) {
  VocabData v;
  SLIM_ASSIGN_OR_RETURN(v.model, RequiredString(file, "tokenizer.ggml.model"));
  SLIM_ASSIGN_OR_RETURN(v.pre, OptionalString(file, "tokenizer.ggml.pre"));

  {
    constexpr std::string_view kKey = "tokenizer.ggml.tokens";
    auto tokens = file.GetStringArray(kKey);
    if (!tokens.ok()) return Wrap(file, kKey, tokens.status());
    v.tokens = std::move(tokens).value();
    if (v.tokens.empty()) return KeyError(file, kKey, "the vocabulary is empty");
    if (v.tokens.size() > static_cast<size_t>(INT32_MAX)) return KeyError(file, kKey, "too many tokens");
  }
  const size_t n = v.tokens.size();

  {
    constexpr std::string_view kKey = "tokenizer.ggml.token_type";
    if (file.Find(kKey) == nullptr) {
      v.token_types.assign(n, TokenType::kNormal);
    } else {
      auto types = file.GetIntArray(kKey);
      if (!types.ok()) return Wrap(file, kKey, types.status());
      if (types->size() != n) {
        return KeyError(file, kKey, "has " + std::to_string(types->size()) + " entries but there are " +
                                        std::to_string(n) + " tokens");
      }
      v.token_types.resize(n);
      for (size_t i = 0; i < n; ++i) {
        const int64_t t = (*types)[i];
        if (t < 0 || t > static_cast<int64_t>(TokenType::kByte)) {
          return KeyError(file, kKey, "token " + std::to_string(i) + " has unknown type " + std::to_string(t));
        }
        v.token_types[i] = static_cast<TokenType>(t);
      }
    }
  }

  {
    constexpr std::string_view kKey = "tokenizer.ggml.merges";
    if (file.Find(kKey) != nullptr) {
      auto merges = file.GetStringArray(kKey);
      if (!merges.ok()) return Wrap(file, kKey, merges.status());
      v.merges = std::move(merges).value();
    } else if (v.model == "gpt2" || v.model == "gemma4") {
      return NotFoundError(file.path() + ": tokenizer metadata '" + std::string(kKey) +
                           "' is missing (required by a BPE vocabulary)");
    }
  }

  {
    constexpr std::string_view kKey = "tokenizer.ggml.scores";
    if (file.Find(kKey) != nullptr) {
      auto scores = file.GetFloatArray(kKey);
      if (!scores.ok()) return Wrap(file, kKey, scores.status());
      if (scores->size() != n) {
        return KeyError(file, kKey, "has " + std::to_string(scores->size()) + " entries but there are " +
                                        std::to_string(n) + " tokens");
      }
      v.scores.assign(scores->begin(), scores->end());
    }
  }

  // llama.cpp's defaults when the keys are absent: SentencePiece vocabularies have <unk> = 0,
  // <s> = 1, </s> = 2, add BOS and prefix a space; BPE ones none of these.
  const bool spm = v.model == "llama";
  SLIM_ASSIGN_OR_RETURN(v.bos_id, IdWithDefault(file, "tokenizer.ggml.bos_token_id", n, spm ? 1 : -1));
  SLIM_ASSIGN_OR_RETURN(v.eos_id, IdWithDefault(file, "tokenizer.ggml.eos_token_id", n, spm ? 2 : -1));
  SLIM_ASSIGN_OR_RETURN(v.unk_id, IdWithDefault(file, "tokenizer.ggml.unknown_token_id", n, spm ? 0 : -1));
  SLIM_ASSIGN_OR_RETURN(v.add_space_prefix, OptionalBool(file, "tokenizer.ggml.add_space_prefix", spm));
  SLIM_ASSIGN_OR_RETURN(v.pad_id, OptionalId(file, "tokenizer.ggml.padding_token_id", n));
  SLIM_ASSIGN_OR_RETURN(v.eot_id, OptionalId(file, "tokenizer.ggml.eot_token_id", n));
  if (v.eot_id < 0) {
    // Chat models whose converter did not record an EOT: use their end-of-turn control token.
    for (size_t i = 0; i < n && v.eot_id < 0; ++i) {
      if (v.token_types[i] == TokenType::kControl &&
          (v.tokens[i] == "<|im_end|>" || v.tokens[i] == "<|eot_id|>")) {
        v.eot_id = static_cast<int32_t>(i);
      }
    }
  }

  SLIM_ASSIGN_OR_RETURN(v.add_bos,
                        OptionalBool(file, "tokenizer.ggml.add_bos_token", spm || PreDefaultsToBos(v.pre)));
  if (v.model == "gemma4") v.add_bos = true;  // llama.cpp forces BOS for Gemma 4 whatever the key says
  SLIM_ASSIGN_OR_RETURN(v.add_eos, OptionalBool(file, "tokenizer.ggml.add_eos_token", false));
  if (v.add_bos && v.bos_id < 0) {
    return KeyError(file, "tokenizer.ggml.add_bos_token", "is true but tokenizer.ggml.bos_token_id is not set");
  }
  if (v.add_eos && v.eos_id < 0) {
    return KeyError(file, "tokenizer.ggml.add_eos_token", "is true but tokenizer.ggml.eos_token_id is not set");
  }
  SLIM_ASSIGN_OR_RETURN(v.chat_template, OptionalString(file, "tokenizer.chat_template"));
  v.rstrip_ids = Phi3RstripIds(file, v);
  return v;
}

}  // namespace slim
