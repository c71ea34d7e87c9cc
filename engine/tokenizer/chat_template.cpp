// Chat templates: recognises ChatML and Llama-3 in a GGUF Jinja source and renders messages the
// way those templates do (including a template's literal default system prompt). No Jinja.
#include "engine/tokenizer/chat_template.h"

#include <utility>

namespace slim {
namespace {

constexpr std::string_view kImStart = "<|im_start|>";
constexpr std::string_view kImEnd = "<|im_end|>";

// Reads the Jinja string literal that starts with the quote at src[q]; returns its unescaped
// text, or nothing when the literal is not terminated.
bool ReadJinjaLiteral(std::string_view src, size_t q, std::string* out) {
  const char quote = src[q];
  out->clear();
  for (size_t i = q + 1; i < src.size(); ++i) {
    const char c = src[i];
    if (c == quote) return true;
    if (c == '\\' && i + 1 < src.size()) {
      const char e = src[++i];
      switch (e) {
        case 'n': out->push_back('\n'); break;
        case 't': out->push_back('\t'); break;
        case 'r': out->push_back('\r'); break;
        default: out->push_back(e); break;  // \' \" \\ and anything else: the character itself
      }
      continue;
    }
    out->push_back(c);
  }
  return false;
}

// A ChatML template that inserts a fixed system message, e.g. SmolLM2's
//   {{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, ...<|im_end|>\n' }}
// has it as one string literal. Returns that message's content, or "" when there is none.
std::string ExtractChatMlDefaultSystem(std::string_view src) {
  constexpr std::string_view kHead = "<|im_start|>system";
  for (size_t at = src.find(kHead); at != std::string_view::npos; at = src.find(kHead, at + 1)) {
    // The literal holding it opens at the nearest quote before it.
    const size_t q = src.find_last_of("'\"", at);
    if (q == std::string_view::npos) continue;
    std::string lit;
    if (!ReadJinjaLiteral(src, q, &lit)) continue;
    const size_t head = lit.find(std::string(kHead) + "\n");
    if (head == std::string::npos) continue;
    const size_t body = head + kHead.size() + 1;
    const size_t end = lit.find(kImEnd, body);
    if (end == std::string::npos || end == body) continue;  // "system\n" + message['content'] etc.
    return lit.substr(body, end - body);
  }
  return {};
}

bool KnownRole(const std::string& role) {
  return role == "system" || role == "user" || role == "assistant" || role == "tool";
}

std::string_view TrimWhitespace(std::string_view s) {
  constexpr std::string_view kWs = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(kWs);
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(kWs);
  return s.substr(b, e - b + 1);
}

}  // namespace

ChatTemplate::ChatTemplate(ChatTemplateKind kind, std::string default_system)
    : kind_(kind), default_system_(std::move(default_system)) {}

StatusOr<ChatTemplate> ChatTemplate::Detect(std::string_view jinja_source) {
  if (jinja_source.empty()) return FailedPreconditionError("the model has no chat template");
  if (jinja_source.find(kImStart) != std::string_view::npos) {
    return ChatTemplate(ChatTemplateKind::kChatML, ExtractChatMlDefaultSystem(jinja_source));
  }
  if (jinja_source.find("<|start_header_id|>") != std::string_view::npos) {
    return ChatTemplate(ChatTemplateKind::kLlama3);
  }
  return FailedPreconditionError(
      "unsupported chat template (neither ChatML <|im_start|> nor Llama-3 <|start_header_id|>)");
}

StatusOr<std::string> ChatTemplate::Apply(const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt) const {
  SLIM_ASSIGN_OR_RETURN(ChatRendering r, Render(messages, add_generation_prompt));
  return std::move(r.text);
}

StatusOr<ChatRendering> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                             bool add_generation_prompt) const {
  if (messages.empty()) return InvalidArgumentError("chat has no messages");
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!KnownRole(messages[i].role)) {
      return InvalidArgumentError("message " + std::to_string(i) + " has unknown role '" + messages[i].role +
                                  "' (expected system, user, assistant or tool)");
    }
  }

  ChatRendering r;
  auto markup = [&r](std::string_view s) {
    if (!r.markup.empty() && r.markup.back().second == r.text.size()) {
      r.markup.back().second += s.size();  // extends the previous range
    } else {
      r.markup.emplace_back(r.text.size(), r.text.size() + s.size());
    }
    r.text.append(s);
  };
  auto content = [&r](std::string_view s) { r.text.append(s); };
  switch (kind_) {
    case ChatTemplateKind::kChatML:
      if (!default_system_.empty() && messages.front().role != "system") {
        markup(kImStart);
        markup("system\n");
        markup(default_system_);
        markup(kImEnd);
        markup("\n");
      }
      for (const ChatMessage& m : messages) {
        markup(kImStart);
        markup(m.role);  // a known role: template-chosen text
        markup("\n");
        content(m.content);
        markup(kImEnd);
        markup("\n");
      }
      if (add_generation_prompt) {
        markup(kImStart);
        markup("assistant\n");
      }
      break;
    case ChatTemplateKind::kLlama3:
      // <|begin_of_text|> is the BOS token, added by the tokenizer. The template trims contents.
      if (!default_system_.empty() && messages.front().role != "system") {
        markup("<|start_header_id|>system<|end_header_id|>\n\n");
        markup(TrimWhitespace(default_system_));
        markup("<|eot_id|>");
      }
      for (const ChatMessage& m : messages) {
        markup("<|start_header_id|>");
        markup(m.role);
        markup("<|end_header_id|>\n\n");
        content(TrimWhitespace(m.content));
        markup("<|eot_id|>");
      }
      if (add_generation_prompt) markup("<|start_header_id|>assistant<|end_header_id|>\n\n");
      break;
  }
  return r;
}

}  // namespace slim
