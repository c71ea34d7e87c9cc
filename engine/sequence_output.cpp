// SequenceOutput: StreamDecoder + StopChecker per token, and the end-of-stream flush.
#include "engine/sequence_output.h"

#include <utility>

namespace slim {

SequenceOutput::SequenceOutput(const Tokenizer* tokenizer, StopParams stop)
    : tokenizer_(tokenizer), stop_(std::move(stop)) {
  if (tokenizer_) decoder_.emplace(*tokenizer_);
}

SequenceOutput::Token SequenceOutput::Push(int32_t token) {
  const std::string delta = decoder_ ? decoder_->Push(token) : std::string();
  const bool eog = tokenizer_ ? tokenizer_->IsEndOfGeneration(token) : false;
  StopChecker::Step step = stop_.Push(token, delta, eog);
  Token t{std::move(step.text), step.finish, {}};
  if (t.finish != FinishReason::kNone) {
    t.rest = stop_.Flush();
    if (decoder_ && t.finish == FinishReason::kLength) t.rest += decoder_->Flush();
  }
  return t;
}

}  // namespace slim
