// The tokenizer matching llama.cpp (and HF tokenizers for tokenizer.json vocabularies): byte-level
// BPE with pre-tokenizer regexes through PCRE2 and merges by rank, BPE over raw UTF-8 (Gemma 4,
// SentencePiece-style tokenizer.json), SentencePiece by score; special/control tokens matched
// verbatim when asked. Thread-safety: immutable after Create; Encode/Decode may be called from
// any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/core/status.h"
#include "engine/tokenizer/vocab.h"

namespace slim {

struct EncodeOptions {
  // Prepend BOS (when the vocab has one). llama.cpp's add_special is add_bos = vocab().add_bos.
  bool add_bos = false;
  bool parse_special = false;  // recognise control/user-defined token texts like <|im_start|>
  // With parse_special: control and unknown token texts are recognised only where they lie
  // wholly inside one of these byte ranges [begin, end) of the text (a chat template's own
  // markup); elsewhere (message content) they are plain text. Empty: everywhere.
  std::vector<std::pair<size_t, size_t>> special_ranges;
};

class Tokenizer {
 public:
  // Unimplemented naming the model for one other than "gpt2", "gemma4", "llama" (and "hf-bpe"
  // from VocabFromHfDir), e.g. bert (WPM) or t5 (UGM), or an unknown pre-tokenizer name
  // (llama.cpp refuses those too; "gpt2" is accepted as an alias of llama.cpp's "gpt-2");
  // InvalidArgument for inconsistent data (type or score count, ids out of range, duplicate token
  // texts).
  static StatusOr<std::unique_ptr<Tokenizer>> Create(VocabData vocab);
  ~Tokenizer();

  // InvalidArgument when `text` is not valid UTF-8 (the message gives the byte offset).
  StatusOr<std::vector<int32_t>> Encode(std::string_view text, const EncodeOptions& opts) const;
  // The pieces the pre-tokenizer regexes cut `text` into (no special-token handling, no BPE),
  // as raw bytes; for debugging tokenization differences. InvalidArgument on invalid UTF-8.
  StatusOr<std::vector<std::string>> PreTokenize(std::string_view text) const;
  // Raw bytes of one token (GPT-2 byte mapping undone, U+2581 -> ' ', <0xNN> -> the byte; a
  // SentencePiece text decodes with the space prefix it was given); control tokens decode to their text
  // only when `render_special` is true, otherwise to "".
  std::string TokenBytes(int32_t id, bool render_special = false) const;
  // Concatenated bytes; may end in the middle of a UTF-8 sequence.
  std::string Decode(std::span<const int32_t> ids, bool render_special = false) const;

  // A cheap lower bound on the length of an encoding, checked before encoding: a text encodes to
  // at least CoveredBytes(text) / max_input_bytes_per_token() tokens. The first is the most input
  // bytes one token can stand for (0 when no bound holds: some merge result is no token, and
  // encoding can drop any byte; NFC vocabularies allow for composition); the second counts the
  // bytes of `text` that its tokens must cover (all but those whose byte symbol is no token,
  // which encode to nothing).
  size_t max_input_bytes_per_token() const;
  size_t CoveredBytes(std::string_view text) const;
  int32_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  // End-of-generation: EOS, EOT (<|im_end|>, <|eot_id|>) and similar.
  bool IsEndOfGeneration(int32_t id) const;
  bool IsControl(int32_t id) const;
  // Token id of an exact token text (e.g. "<|im_end|>"), or -1.
  int32_t FindToken(std::string_view text) const;
  const VocabData& vocab() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Incremental detokenizer for streaming: Push returns the newly completed UTF-8 text and holds
// back an incomplete trailing sequence until the next token completes it; Flush returns what
// is left (invalid bytes replaced by U+FFFD). Not thread-safe; one per sequence.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool render_special = false);
  std::string Push(int32_t id);
  std::string Flush();

 private:
  const Tokenizer& tok_;
  bool render_special_;
  std::string pending_;
};

}  // namespace slim
