// libFuzzer target for the tokenizer and the chat template with the real default model's
// vocabulary: the first input byte picks options, the rest is text (or, for chat, turns
// separated by NUL bytes). Besides crashes and sanitizer reports it traps on broken invariants:
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
#include "tests/fuzz/fuzz_engine.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

using namespace slim;

using fuzz::Check;
using fuzz::TheEngine;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Engine& engine = TheEngine();
  const Tokenizer& tok = *engine.tokenizer();
  const uint8_t mode = data[0];
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
  if (!opts.parse_special && !opts.add_bos && tok.CoveredBytes(text) == text.size()) {
    Check(tok.Decode(*ids) == text);
    StreamDecoder sd(tok);
    std::string streamed;
    for (int32_t id : *ids) streamed += sd.Push(id);
    streamed += sd.Flush();
    Check(streamed == text);
  }
  return 0;
}
