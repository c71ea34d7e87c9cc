// libFuzzer target for the tokenizer and the chat template with the real default model's
// vocabulary (bit 5 of the mode: llama.cpp's SentencePiece llama-spm vocabulary instead): the
// first input byte picks options, the rest is text (or, for chat, turns separated by NUL bytes). Besides crashes and sanitizer reports it traps on broken invariants:
//   * Encode refuses only invalid UTF-8, and then with INVALID_ARGUMENT;
//   * ids lie in the vocabulary, and at least CoveredBytes / max_input_bytes_per_token of them;
//   * plain-text encoding of text whose every byte has a token decodes back to the text, and a
//     StreamDecoder fed the ids one by one yields the same bytes (valid UTF-8 in, so nothing to
//     replace);
//   * chat rendering never turns user content into special tokens.
// Seeds: tests/fuzz/tokenizer_seeds (scripts/fuzz.sh tokenizer).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "engine/gguf/gguf_file.h"
#include "engine/tokenizer/vocab.h"
#include "tests/fuzz/fuzz_engine.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

using namespace slim;

using fuzz::Check;
using fuzz::TheEngine;

// llama.cpp's LLaMA SentencePiece vocabulary (scripts/fetch-llamacpp-vocabs.sh), loaded once.
const Tokenizer& SpmTokenizer() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    auto file = gguf::GgufFile::Open(SLIM_SOURCE_DIR "/models/llamacpp-vocab/ggml-vocab-llama-spm.gguf");
    if (!file.ok()) std::fprintf(stderr, "%s\n", file.status().ToString().c_str());
    Check(file.ok());
    auto vocab = VocabFromGguf(**file);
    Check(vocab.ok());
    auto t = Tokenizer::Create(std::move(vocab).value());
    Check(t.ok());
    return std::move(t).value();
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const bool spm = (mode & 0xA0) == 0x20;
  const Engine& engine = TheEngine();
  const Tokenizer& tok = spm ? SpmTokenizer() : *engine.tokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  if (mode & 0x80) {
    // Chat: turns separated by NUL; roles cycle user/assistant, an optional system first.
    std::vector<ChatMessage> messages;
    if (mode & 0x40) messages.push_back({"system", "You are terse."});
    size_t start = 0;
    for (size_t i = 0; i <= text.size(); ++i) {
      if (i == text.size() || text[i] == '\0') {
        messages.push_back({messages.size() % 2 == 0 ? "user" : "assistant", std::string(text.substr(start, i - start))});
        start = i + 1;
      }
    }
    StatusOr<std::vector<int32_t>> ids = engine.TokenizeChat(messages);
    if (!ids.ok()) {
      Check(ids.status().code() == StatusCode::kInvalidArgument);
      return 0;
    }
    // The template's own markup has a fixed number of control tokens per turn; content adds none.
    std::vector<ChatMessage> empty = messages;
    for (ChatMessage& m : empty) m.content = "x";
    StatusOr<std::vector<int32_t>> base = engine.TokenizeChat(empty);
    Check(base.ok());
    size_t controls = 0, base_controls = 0;
    for (int32_t id : *ids) controls += tok.IsControl(id) ? 1 : 0;
    for (int32_t id : *base) base_controls += tok.IsControl(id) ? 1 : 0;
    Check(controls == base_controls);
    return 0;
  }

  EncodeOptions opts;
  opts.add_bos = (mode & 1) != 0;
  opts.parse_special = (mode & 2) != 0;
  StatusOr<std::vector<int32_t>> ids = tok.Encode(text, opts);
  if (!ids.ok()) {
    Check(ids.status().code() == StatusCode::kInvalidArgument);
    return 0;
  }
  for (int32_t id : *ids) Check(id >= 0 && id < tok.vocab_size());
  const size_t per_token = tok.max_input_bytes_per_token();
  Check(per_token > 0);
  Check(ids->size() * per_token >= tok.CoveredBytes(text));
  const bool escaped_space = text.find("\xE2\x96\x81") != std::string_view::npos;
  if (!opts.parse_special && !opts.add_bos && tok.CoveredBytes(text) == text.size() && !(spm && escaped_space)) {
    // Control texts that SentencePiece merges can form render as their text.
    const std::string want = (spm && !text.empty() ? " " : "") + std::string(text);
    Check(tok.Decode(*ids, /*render_special=*/spm) == want);
    StreamDecoder sd(tok, /*render_special=*/spm);
    std::string streamed;
    for (int32_t id : *ids) streamed += sd.Push(id);
    streamed += sd.Flush();
    Check(streamed == want);
  }
  return 0;
}
