// Chat templates: detects the family from the GGUF Jinja source (ChatML, Llama-3) and renders
// messages to prompt text. Not a Jinja interpreter: known families only.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/core/status.h"

namespace slim {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant"
  std::string content;
};

enum class ChatTemplateKind { kChatML, kLlama3 };

// A rendered chat: the prompt text and the byte ranges [begin, end) of it that the template
// wrote (its markup and default system message), as opposed to message content.
struct ChatRendering {
  std::string text;
  std::vector<std::pair<size_t, size_t>> markup;
};

class ChatTemplate {
 public:
  // Detects the family from the template source; FailedPrecondition when unknown or empty.
  static StatusOr<ChatTemplate> Detect(std::string_view jinja_source);
  explicit ChatTemplate(ChatTemplateKind kind, std::string default_system = "");

  ChatTemplateKind kind() const { return kind_; }
  // System message the template inserts when the chat does not start with one ("" if none).
  const std::string& default_system() const { return default_system_; }
  // InvalidArgument for an empty message list or an unknown role.
  StatusOr<std::string> Apply(const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt = true) const;
  // As Apply, with the markup ranges (so that content can be tokenized as plain text).
  StatusOr<ChatRendering> Render(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) const;

 private:
  ChatTemplateKind kind_;
  std::string default_system_;  // inserted when the first message is not a system message
};

}  // namespace slim
