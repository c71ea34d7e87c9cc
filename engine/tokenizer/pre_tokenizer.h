// llama.cpp's pre-tokenizers for byte-level BPE: the regex list of each `tokenizer.ggml.pre`
// name, rewritten from llama.cpp's regex dialect for PCRE2 (White_Space as llama.cpp defines it,
// the Unicode 15 letters, numbers and punctuation PCRE2's older tables lack) and compiled.
// Thread-safety: free functions; a compiled Pcre2Code may be matched from any thread with its
// own match data.
#pragma once

#include <pcre2.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace slim {

struct PreTokenizerSpec {
  std::vector<std::string> regexes;
  bool ignore_merges = false;  // a piece that is itself a token is emitted whole (Llama-3)
  bool byte_encode = true;     // false: merges run on raw UTF-8 characters (Gemma 4)
  bool escape_whitespace = false;     // ' ' becomes U+2581 before splitting (Gemma 4)
  bool newline_pieces_whole = false;  // a piece of only '\n' that is a token stays whole (Gemma 4)
};

// Every tokenizer.ggml.pre name llama.cpp knows for BPE vocabularies but "kimi-k2" (whose split
// is hand-written code, not a regex); Unimplemented naming the name for any other.
StatusOr<PreTokenizerSpec> PreTokenizerFor(const std::string& pre);
// Every name PreTokenizerFor accepts, in llama.cpp's order.
std::vector<std::string> KnownPreTokenizers();

struct Pcre2CodeFree {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct Pcre2MatchDataFree {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
using Pcre2Code = std::unique_ptr<pcre2_code, Pcre2CodeFree>;
using Pcre2MatchData = std::unique_ptr<pcre2_match_data, Pcre2MatchDataFree>;

// PCRE2's message for an error code.
std::string Pcre2ErrorText(int code);

// Translates and compiles one of llama.cpp's pre-tokenizer regexes (UTF, UCP, JIT when available).
StatusOr<Pcre2Code> CompileRegex(const std::string& source);

}  // namespace slim
