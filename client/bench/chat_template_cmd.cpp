// `sliminfer-bench chat-template`: the model's (GGUF tokenizer.chat_template) or a file's
// template, bos/eos from the model or the flags, messages from a JSON file; prints the text.
#include "client/bench/chat_template_cmd.h"

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "client/bench/args.h"
#include "engine/gguf/gguf_file.h"
#include "engine/tokenizer/chat_template.h"

namespace slim::bench {
namespace {

using json = nlohmann::json;

StatusOr<std::string> ReadAll(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(std::string(flag) + " " + path + ": cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A JSON array of {"role", "content"} objects, or an object holding one under "messages".
StatusOr<std::vector<ChatMessage>> ParseMessages(const std::string& text, const std::string& path) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return InvalidArgumentError("--messages " + path + ": not valid JSON");
  if (j.is_object() && j.contains("messages")) j = j["messages"];
  if (!j.is_array()) return InvalidArgumentError("--messages " + path + ": expected an array of messages");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& m = j[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string()) {
      return InvalidArgumentError("--messages " + path + ": message " + std::to_string(i) +
                                  " needs string fields role and content");
    }
    out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return out;
}

}  // namespace

Status CmdChatTemplate(int argc, char** argv) {
  SLIM_ASSIGN_OR_RETURN(Args a, Args::Parse(argc, argv, 2, {"model", "template-file", "bos-token", "eos-token", "messages"},
                                            {"no-generation-prompt"}));
  if (!a.Has("model") && !a.Has("template-file")) return InvalidArgumentError("--model or --template-file is required");
  if (!a.Has("messages")) return InvalidArgumentError("--messages FILE.json is required");
  std::string source;
  ChatTemplateOptions o;
  if (a.Has("model")) {
    SLIM_ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(a.Str("model")));
    SLIM_ASSIGN_OR_RETURN(VocabData vocab, VocabFromGguf(*file));
    o = ChatTemplateOptionsFor(vocab);
    source = vocab.chat_template;
  }
  if (a.Has("template-file")) {
    SLIM_ASSIGN_OR_RETURN(source, ReadAll(a.Str("template-file"), "--template-file"));
  }
  if (a.Has("bos-token")) o.bos_token = a.Str("bos-token");
  if (a.Has("eos-token")) o.eos_token = a.Str("eos-token");
  SLIM_ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::Create(source, o));
  SLIM_ASSIGN_OR_RETURN(std::string text, ReadAll(a.Str("messages"), "--messages"));
  SLIM_ASSIGN_OR_RETURN(std::vector<ChatMessage> messages, ParseMessages(text, a.Str("messages")));
  SLIM_ASSIGN_OR_RETURN(std::string out, t.Apply(messages, !a.Flag("no-generation-prompt")));
  std::cout << out << std::flush;
  return OkStatus();
}

}  // namespace slim::bench
