// The tokenizer's vocabulary as plain data (tokens, types, merges or scores, special ids, chat
// template), read from GGUF metadata (here) or a Hugging Face tokenizer.json (hf_tokenizer.h).
// Separate from the tokenizer so tests can build small vocabularies.
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
  // tokenizer.ggml.model: "gpt2" (byte-level BPE), "gemma4" (BPE over raw UTF-8), "llama"
  // (SentencePiece), or "hf-bpe" (raw UTF-8 BPE of a tokenizer.json); others are refused.
  std::string model = "gpt2";
  std::string pre;             // tokenizer.ggml.pre: selects the pre-tokenizer regexes (BPE only)
  // Token strings: GPT-2 unicode-mapped bytes for "gpt2", U+2581-escaped text otherwise.
  std::vector<std::string> tokens;
  std::vector<TokenType> token_types;
  std::vector<std::string> merges;   // "left right", rank = index (BPE)
  std::vector<float> scores;         // per token, SentencePiece merge priority; empty = all 0
  bool add_space_prefix = false;     // SentencePiece: prepend ' ' to text that follows a special token or starts it
  // Tokens whose following whitespace is stripped when they are matched as special text
  // (llama.cpp's RSTRIP attribute, which it sets for Phi-3's special tokens).
  std::vector<int32_t> rstrip_ids;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  int32_t eot_id = -1;               // end-of-turn (e.g. <|im_end|>) if known
  bool add_bos = false;
  bool add_eos = false;
  std::string chat_template;         // Jinja source from tokenizer.chat_template, may be empty

  // Text rules of a tokenizer.json BPE vocabulary (VocabFromHfDir), used instead of `pre` when
  // `hf_rules` is set.
  enum class SpacePrefix {
    kNone,
    kAlways,            // normalizer Prepend("\u2581"): every text segment
    kMetaspaceAlways,   // Metaspace prepend_scheme "always": every segment not starting with U+2581
    kMetaspaceFirst,    // Metaspace prepend_scheme "first": the same, only for a segment at offset 0
  };
  bool hf_rules = false;
  bool byte_level = true;                  // GPT-2 byte mapping; false: raw UTF-8, <0xNN> fallback
  bool nfc = false;                        // normalizer NFC
  bool escape_whitespace = false;          // ' ' -> U+2581 (normalizer Replace or Metaspace)
  SpacePrefix space_prefix = SpacePrefix::kNone;
  std::vector<std::string> split_regexes;  // pre-tokenizer Split regexes in order; empty: one piece
  bool ignore_merges = false;
};

StatusOr<VocabData> VocabFromGguf(const gguf::GgufFile& file);

}  // namespace slim
