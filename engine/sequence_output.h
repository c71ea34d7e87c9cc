// The text side of one generated sequence, token by token: detokenization (StreamDecoder),
// end-of-generation, stop conditions (StopChecker) and the text released at the end. One class
// so that Engine::Generate and the server's scheduler produce the same text for the same tokens.
// Not thread-safe; one per sequence.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "engine/sampler/stop_checker.h"
#include "engine/tokenizer/tokenizer.h"

namespace slim {

class SequenceOutput {
 public:
  // `tokenizer` may be null (synthetic weights: no text, no end-of-generation tokens); `stop`
  // must have passed StopParams::Validate.
  SequenceOutput(const Tokenizer* tokenizer, StopParams stop);

  struct Token {
    std::string text;                        // text this token made final
    FinishReason finish = FinishReason::kNone;
    // When the token finished the sequence: held-back text that never became a stop string,
    // then (only when the length limit ended it) an incomplete UTF-8 tail as U+FFFD.
    std::string rest;
  };
  Token Push(int32_t token);
  int32_t generated() const { return stop_.generated(); }

 private:
  const Tokenizer* tokenizer_;
  std::optional<StreamDecoder> decoder_;
  StopChecker stop_;
};

}  // namespace slim
