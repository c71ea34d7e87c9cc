// Chat templates: a model's Jinja `tokenizer.chat_template` run by our interpreter
// (engine/tokenizer/jinja) with the variables transformers' apply_chat_template passes, and
// the rendering's markup ranges (what the template wrote, as opposed to message content).
// Immutable after Create; Render may be called from any thread concurrently.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/core/status.h"
#include "engine/tokenizer/jinja/template.h"
#include "engine/tokenizer/vocab.h"

namespace slim {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", "tool"
  std::string content;
};

// What the template's output looks like (descriptive only; rendering never depends on it).
enum class ChatTemplateKind { kChatML, kLlama3, kOther };

// A rendered chat: the prompt text and the byte ranges [begin, end) of it that the template
// wrote (its literals, the bos/eos tokens, a default system message), as opposed to message
// content. The engine parses special tokens only inside these ranges.
struct ChatRendering {
  std::string text;
  std::vector<std::pair<size_t, size_t>> markup;
};

struct ChatTemplateOptions {
  std::string bos_token;  // the template's `bos_token` variable ("" when the model has none)
  std::string eos_token;  // `eos_token`
};

class ChatTemplate {
 public:
  // FailedPrecondition for an empty source; InvalidArgument (syntax) or Unimplemented (a
  // construct outside the interpreter's subset) naming the problem when the template does not
  // parse; FailedPrecondition when it cannot render a one-user-message chat.
  static StatusOr<ChatTemplate> Create(std::string_view jinja_source, const ChatTemplateOptions& options = {});

  ChatTemplateKind kind() const { return kind_; }
  // The system message the template inserts when a chat does not start with one ("" if none):
  // what differs between rendering [user] and [system: <probe>, user].
  const std::string& default_system() const { return default_system_; }
  const ChatTemplateOptions& options() const { return options_; }

  // InvalidArgument for an empty message list, an unknown role, or an error the template
  // raised (raise_exception, or what jinja2 would raise) for this chat.
  StatusOr<std::string> Apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) const;
  // As Apply, with the markup ranges (so that content can be tokenized as plain text).
  StatusOr<ChatRendering> Render(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) const;

 private:
  ChatTemplate(jinja::Template t, ChatTemplateOptions o) : template_(std::move(t)), options_(std::move(o)) {}
  StatusOr<jinja::Str> RenderStr(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  jinja::Template template_;
  ChatTemplateOptions options_;
  ChatTemplateKind kind_ = ChatTemplateKind::kOther;
  std::string default_system_;
};

// bos_token / eos_token as transformers passes them: the vocabulary's BOS and EOS token texts
// ("" when it has none).
ChatTemplateOptions ChatTemplateOptionsFor(const VocabData& vocab);

// Whether the rendering starts with the BOS token the template wrote itself ({{ bos_token }},
// as markup): the tokenizer must then not add a second one.
bool RenderingStartsWithBos(const ChatRendering& r, const ChatTemplateOptions& o);

}  // namespace slim
