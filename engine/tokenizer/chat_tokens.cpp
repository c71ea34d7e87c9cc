// Chat messages -> token ids (see chat_tokens.h).
#include "engine/tokenizer/chat_tokens.h"

#include <utility>

namespace slim {

StatusOr<std::vector<int32_t>> EncodeChat(const Tokenizer& tokenizer, const ChatTemplate& chat,
                                          const std::vector<ChatMessage>& messages,
                                          const ChatEncodeOptions& options) {
  SLIM_ASSIGN_OR_RETURN(ChatRendering r, chat.Render(messages, options.add_generation_prompt));
  EncodeOptions eo;
  // A template that writes {{ bos_token }} itself gets no second BOS from the tokenizer.
  eo.add_bos = tokenizer.vocab().add_bos && !RenderingStartsWithBos(r, chat.options());
  eo.parse_special = true;
  if (!options.content_specials) eo.special_ranges = std::move(r.markup);
  return tokenizer.Encode(r.text, eo);
}

}  // namespace slim
