// SentencePiece tokenization as llama.cpp's llm_tokenizer_spm does it (tokenizer.ggml.model =
// llama: LLaMA 1/2, Mistral v0.1-v0.3, Phi-3): spaces escaped as U+2581, one symbol per UTF-8
// character, adjacent pairs whose concatenation is a token merged highest score first (leftmost on
// ties), leftover characters that are no token emitted as byte tokens <0xNN> (or the unknown token
// when the vocabulary has no byte token for a byte). Owns no special-token partition and no
// add-space-prefix rule (tokenizer.cpp). Thread-safety: immutable after Build; Encode may be
// called from any thread with its own SpmScratch.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/bpe.h"
#include "engine/tokenizer/vocab.h"

namespace slim {

struct SpmScratch {
  struct Symbol {
    int32_t prev;
    int32_t next;
    uint32_t offset;  // bytes of the escaped text
    uint32_t length;  // 0 once merged into its left neighbour
  };
  struct Bigram {
    float score;
    int32_t left;
    int32_t right;
    uint32_t length;  // bytes of left + right when queued
  };
  std::vector<Symbol> syms;
  std::vector<Bigram> heap;
  std::string escaped;
  std::string key;
};

// Replaces every ' ' with U+2581 (llama.cpp's llama_escape_whitespace).
void EscapeSpmWhitespace(std::string_view text, std::string* out);
// Replaces every U+2581 with ' '.
std::string UnescapeSpmWhitespace(std::string_view text);

class SpmModel {
 public:
  // `token_to_id` (every non-empty token text) must outlive the model.
  static SpmModel Build(const VocabData& vocab, const TokenIndex* token_to_id);

  // Appends the tokens of `text` (raw input; escaped here).
  void Encode(std::string_view text, SpmScratch* scratch, std::vector<int32_t>* out) const;

  // The token a leftover byte becomes (<0xNN>, else the one-byte token, else unk), or -1.
  int32_t ByteToken(uint8_t b) const { return byte_token_[b]; }

 private:
  void TryAddBigram(int32_t left, int32_t right, SpmScratch* s) const;
  int32_t Lookup(std::string_view text, SpmScratch* s) const;

  const TokenIndex* token_to_id_ = nullptr;
  std::vector<float> scores_;
  std::array<int32_t, 256> byte_token_{};
};

}  // namespace slim
