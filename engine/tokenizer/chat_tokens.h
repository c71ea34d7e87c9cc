// Chat messages -> token ids: a ChatTemplate's rendering tokenized with special tokens parsed
// only inside its markup (message content stays plain text unless content_specials), and one
// BOS: the tokenizer's, unless the template wrote {{ bos_token }} itself. Thread-safe (both
// inputs are immutable).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/core/status.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace slim {

struct ChatEncodeOptions {
  bool add_generation_prompt = true;
  bool content_specials = false;  // also recognise special-token texts inside message content
};

StatusOr<std::vector<int32_t>> EncodeChat(const Tokenizer& tokenizer, const ChatTemplate& chat,
                                          const std::vector<ChatMessage>& messages,
                                          const ChatEncodeOptions& options = {});

}  // namespace slim
