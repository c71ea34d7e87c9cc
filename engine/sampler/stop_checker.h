// Stop conditions over a generated stream: max tokens, stop token ids, end-of-generation, and
// stop strings matched on the detokenized text (text that could still become a stop string is
// held back, and the stop string itself is never emitted). Not thread-safe; one per sequence.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace slim {

enum class FinishReason { kNone, kLength, kStopToken, kStopString, kEndOfGeneration };
const char* FinishReasonName(FinishReason r);  // "length", "stop_token", "stop", "eos"

struct StopParams {
  int32_t max_tokens = 16;                  // [1, context]
  std::vector<int32_t> stop_token_ids;      // each in [0, vocab)
  std::vector<std::string> stop_strings;    // each non-empty, <= 256 bytes, at most 16
  bool ignore_eos = false;

  Status Validate(int32_t vocab_size, int32_t max_context) const;
};

class StopChecker {
 public:
  // `params` must have passed Validate.
  explicit StopChecker(StopParams params);

  struct Step {
    std::string text;                       // text safe to emit now
    FinishReason finish = FinishReason::kNone;
  };
  // Feeds one generated token and its decoded text delta (from StreamDecoder::Push);
  // `is_eog` is the tokenizer's end-of-generation verdict for `token`. Checks in order: stop
  // token id, end-of-generation (unless ignore_eos), stop strings, max_tokens. A Step that
  // finishes already carries all remaining emittable text (held-back text is released; for a
  // stop string, the text before it). Pushing after a finish returns an empty kNone Step.
  Step Push(int32_t token, const std::string& text_delta, bool is_eog);
  // At the end (any reason): the held-back text that was not part of a stop string. Empty after
  // a finishing Push; non-empty only when the caller stops the sequence itself (cancel, context
  // full) while text is held back.
  std::string Flush();
  int32_t generated() const { return generated_; }

 private:
  StopParams p_;
  std::string held_;
  int32_t generated_ = 0;
  bool done_ = false;
};

}  // namespace slim
