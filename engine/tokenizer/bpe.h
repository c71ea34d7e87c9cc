// BPE merging of one pre-tokenized piece as llama.cpp's llm_tokenizer_bpe_session does it: from
// one symbol per byte (GPT-2 byte-level vocabularies) or per UTF-8 character (vocabularies of raw
// text such as Gemma 4's), repeatedly apply the lowest-ranked, then leftmost, adjacent merge.
// Owns no pre-tokenization and no special tokens (tokenizer.cpp). Thread-safety: immutable after
// Build; EncodePiece may be called from any thread with its own BpeScratch.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer/vocab.h"

namespace slim {

using TokenIndex = std::unordered_map<std::string, int32_t>;

// GPT-2's bytes_to_unicode: the code point that stands for byte `b` in byte-level token strings.
uint32_t ByteToCodePoint(uint8_t b);
// Undoes the byte mapping of a vocabulary string. Code points outside the table (malformed
// vocabularies) are copied through as UTF-8, where llama.cpp would print an [UNK_BYTE_..] marker.
std::string UnmapBytes(std::string_view s);

struct BpeOptions {
  bool byte_encode = true;          // GPT-2 byte mapping; false: symbols are raw UTF-8 characters
  bool ignore_merges = false;       // a piece that is itself a token is emitted whole (Llama-3)
  bool newline_pieces_whole = false;  // a piece of only '\n' that is a token is emitted whole (Gemma 4)
};

// Per-call working state, reused across the pieces of one Encode call.
struct BpeScratch {
  struct Symbol {
    int32_t sym;  // interned symbol; -1 once merged into its left neighbour; kRawChar: see bpe.cpp
    int32_t prev;
    int32_t next;
    uint32_t offset;  // bytes of the piece it started as
    uint32_t length;
  };
  struct Bigram {
    int32_t rank;
    int32_t left;
    int32_t right;
    int32_t left_sym;
    int32_t right_sym;
    int32_t result;
  };
  std::vector<Symbol> syms;
  std::vector<Bigram> heap;
  std::string mapped;
};

class BpeModel {
 public:
  // `token_to_id` (every non-empty token text) must outlive the model.
  static BpeModel Build(const VocabData& vocab, const TokenIndex* token_to_id, const BpeOptions& opts);

  // Appends the tokens of one piece (raw input bytes, before any byte mapping).
  void EncodePiece(std::string_view piece, BpeScratch* scratch, std::vector<int32_t>* out) const;

  // True when every merge result is a token: then each emitted token covers exactly the input
  // bytes of its text, and Tokenizer::max_input_bytes_per_token has a bound.
  bool merges_complete() const { return merges_complete_; }
  // The most input bytes one merge result stands for.
  size_t longest_merge_input() const { return longest_merge_input_; }
  // Bytes that may encode to no token at all: their symbol is no token and has no fallback.
  bool ByteMayVanish(uint8_t b) const { return vanishing_[b]; }

 private:
  struct Merge {
    int32_t rank = 0;
    int32_t result = 0;  // interned symbol of left+right
  };
  int32_t Intern(const std::string& s);
  int32_t FindSymbol(std::string_view s) const;
  void EmitBytes(std::string_view text, std::vector<int32_t>* out) const;
  void EmitSymbol(const BpeScratch::Symbol& s, std::string_view piece, std::vector<int32_t>* out) const;

  const TokenIndex* token_to_id_ = nullptr;
  BpeOptions opts_;
  // Every string that can appear as a symbol is interned once.
  std::vector<std::string> sym_text_;  // byte-mapped (or raw) text of each symbol
  std::vector<int32_t> sym_token_;     // its token id, -1 when the vocabulary lacks it
  std::unordered_map<std::string, int32_t> sym_index_;
  std::unordered_map<uint64_t, Merge> merges_;  // (left sym, right sym) -> rank, result
  std::array<int32_t, 256> byte_sym_{};         // symbol of each raw byte (byte_encode)
  std::array<int32_t, 256> fallback_token_{};   // token a leftover byte becomes, or -1
  std::array<bool, 256> vanishing_{};
  bool merges_complete_ = true;
  size_t longest_merge_input_ = 1;
};

}  // namespace slim
