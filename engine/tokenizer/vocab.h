// The tokenizer's vocabulary as plain data (tokens, types, merges, special ids, chat template),
// read from GGUF metadata. Separate from the tokenizer so tests can build small vocabularies.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace slim {
namespace gguf { class GgufFile; }

// llama.cpp token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6,
};

struct VocabData {
  std::string model = "gpt2";  // tokenizer.ggml.model; only byte-level BPE ("gpt2") is supported
  std::string pre;             // tokenizer.ggml.pre: selects the pre-tokenizer regexes
  std::vector<std::string> tokens;   // byte-level (GPT-2 unicode-mapped) token strings
  std::vector<TokenType> token_types;
  std::vector<std::string> merges;   // "left right", rank = index
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  int32_t eot_id = -1;               // end-of-turn (e.g. <|im_end|>) if known
  bool add_bos = false;
  bool add_eos = false;
  std::string chat_template;         // Jinja source from tokenizer.chat_template, may be empty
};

StatusOr<VocabData> VocabFromGguf(const gguf::GgufFile& file);

}  // namespace slim
