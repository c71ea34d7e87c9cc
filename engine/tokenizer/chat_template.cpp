// Chat templates on the Jinja interpreter: the variables (messages as dicts whose `content` is
// content-provenance text, add_generation_prompt, bos_token, eos_token, tools=None,
// documents=None, as transformers passes them), markup ranges from the rendering's provenance,
// and the load-time probe renders (kind, default system message).
#include "engine/tokenizer/chat_template.h"

#include <utility>

namespace slim {
namespace {

bool KnownRole(const std::string& role) {
  return role == "system" || role == "user" || role == "assistant" || role == "tool";
}

// The complement of the content ranges: the bytes the template wrote.
std::vector<std::pair<size_t, size_t>> MarkupOf(const jinja::Str& s) {
  std::vector<std::pair<size_t, size_t>> out;
  size_t at = 0;
  for (const auto& [b, e] : s.content) {
    if (b > at) out.emplace_back(at, b);
    at = e;
  }
  if (at < s.text.size()) out.emplace_back(at, s.text.size());
  return out;
}

}  // namespace

ChatTemplateOptions ChatTemplateOptionsFor(const VocabData& vocab) {
  ChatTemplateOptions o;
  auto text = [&](int32_t id) {
    return id >= 0 && static_cast<size_t>(id) < vocab.tokens.size() ? vocab.tokens[static_cast<size_t>(id)] : "";
  };
  o.bos_token = text(vocab.bos_id);
  o.eos_token = text(vocab.eos_id);
  return o;
}

bool RenderingStartsWithBos(const ChatRendering& r, const ChatTemplateOptions& o) {
  const size_t n = o.bos_token.size();
  return n > 0 && r.text.compare(0, n, o.bos_token) == 0 && !r.markup.empty() && r.markup.front().first == 0 &&
         r.markup.front().second >= n;
}

StatusOr<ChatTemplate> ChatTemplate::Create(std::string_view source, const ChatTemplateOptions& options) {
  if (source.empty()) return FailedPreconditionError("the model has no chat template");
  SLIM_ASSIGN_OR_RETURN(jinja::Template t, jinja::Template::Parse(source));
  ChatTemplate ct(std::move(t), options);
  // A template that cannot render the simplest chat is refused at load.
  auto probe = ct.RenderStr({{"user", "Hi"}}, true);
  if (!probe.ok()) {
    if (probe.status().code() == StatusCode::kUnimplemented) return probe.status();
    return FailedPreconditionError("chat template cannot render a one-message chat: " + probe.status().message());
  }
  const std::string& text = probe->text;
  if (text.find("<|im_start|>") != std::string::npos) {
    ct.kind_ = ChatTemplateKind::kChatML;
  } else if (text.find("<|start_header_id|>") != std::string::npos) {
    ct.kind_ = ChatTemplateKind::kLlama3;
  }
  // Default system message: with system content X the rendering is P + X + S; if the
  // rendering without a system message is P + D + S, D is what the template inserted.
  constexpr std::string_view kProbe = "\x01system-probe\x01";
  auto with = ct.RenderStr({{"system", std::string(kProbe)}, {"user", "Hi"}}, true);
  if (with.ok()) {
    const size_t at = with->text.find(kProbe);
    if (at != std::string::npos) {
      const std::string p = with->text.substr(0, at), s = with->text.substr(at + kProbe.size());
      if (text.size() > p.size() + s.size() && text.compare(0, p.size(), p) == 0 &&
          text.compare(text.size() - s.size(), s.size(), s) == 0) {
        ct.default_system_ = text.substr(p.size(), text.size() - p.size() - s.size());
      }
    }
  }
  return ct;
}

StatusOr<jinja::Str> ChatTemplate::RenderStr(const std::vector<ChatMessage>& messages,
                                             bool add_generation_prompt) const {
  if (messages.empty()) return InvalidArgumentError("chat has no messages");
  jinja::List list;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (!KnownRole(m.role)) {
      return InvalidArgumentError("message " + std::to_string(i) + " has unknown role '" + m.role +
                                  "' (expected system, user, assistant or tool)");
    }
    jinja::Dict d;
    d.Set("role", jinja::Value::String(jinja::Str(m.role)));  // a known role: markup
    d.Set("content", jinja::Value::String(jinja::Str::Content(m.content)));
    list.push_back(jinja::Value::MakeDict(std::move(d)));
  }
  jinja::Dict vars;
  vars.Set("messages", jinja::Value::MakeList(std::move(list)));
  vars.Set("add_generation_prompt", jinja::Value::Bool(add_generation_prompt));
  vars.Set("bos_token", jinja::Value::String(jinja::Str(options_.bos_token)));
  vars.Set("eos_token", jinja::Value::String(jinja::Str(options_.eos_token)));
  vars.Set("tools", jinja::Value::None());
  vars.Set("documents", jinja::Value::None());
  return template_.Render(vars);
}

StatusOr<std::string> ChatTemplate::Apply(const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt) const {
  SLIM_ASSIGN_OR_RETURN(jinja::Str s, RenderStr(messages, add_generation_prompt));
  return std::move(s.text);
}

StatusOr<ChatRendering> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                             bool add_generation_prompt) const {
  SLIM_ASSIGN_OR_RETURN(jinja::Str s, RenderStr(messages, add_generation_prompt));
  ChatRendering r;
  r.markup = MarkupOf(s);
  r.text = std::move(s.text);
  return r;
}

}  // namespace slim
