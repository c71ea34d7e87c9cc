// The engine's chat templates: --chat-template FILE overrides the model's (an unreadable or
// unrunnable file fails Create, naming it); an unrunnable model template keeps plain
// tokenization working and makes chat fail with the template's error; a template that writes
// {{ bos_token }} gets no second BOS. On synthetic:tiny with a 300-token vocabulary built here
// (add_bos on, so the BOS rule is visible) and on the real SmolLM2.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "tests/gguf/gguf_builder.h"

namespace slim {
namespace {

using gguf::ValueType;
using gguf::testing::GgufBuilder;

constexpr int32_t kBos = 298;  // "<s>"
constexpr int32_t kEos = 299;  // "</s>"

std::string WriteTemp(const std::string& name, const std::vector<uint8_t>& bytes) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                              static_cast<std::streamsize>(bytes.size()));
  return path;
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  return WriteTemp(name, std::vector<uint8_t>(text.begin(), text.end()));
}

// A byte-level vocabulary of synthetic:tiny's 300 tokens: the printable ASCII characters,
// fillers, and <s> / </s> as control tokens; add_bos on.
std::string TinyVocab(const std::string& chat_template) {
  std::vector<std::string> tokens;
  std::vector<std::vector<uint8_t>> types;
  for (char c = '!'; c <= '~'; ++c) tokens.push_back(std::string(1, c));
  while (tokens.size() < 298) tokens.push_back("filler" + std::to_string(tokens.size()));
  tokens.push_back("<s>");
  tokens.push_back("</s>");
  for (size_t i = 0; i < tokens.size(); ++i) types.push_back(GgufBuilder::Scalar<int32_t>(i >= 298 ? 3 : 1));
  GgufBuilder b;
  b.Str("general.architecture", "llama")
      .Str("tokenizer.ggml.model", "gpt2")
      .Str("tokenizer.ggml.pre", "smollm")
      .Kv("tokenizer.ggml.tokens", ValueType::kArray, GgufBuilder::StringArray(tokens))
      .Kv("tokenizer.ggml.token_type", ValueType::kArray, GgufBuilder::Array(ValueType::kInt32, types))
      .Kv("tokenizer.ggml.merges", ValueType::kArray, GgufBuilder::StringArray({}))
      .U32("tokenizer.ggml.bos_token_id", kBos)
      .U32("tokenizer.ggml.eos_token_id", kEos)
      .Bool("tokenizer.ggml.add_bos_token", true)
      .Str("tokenizer.chat_template", chat_template);
  return WriteTemp("tiny_vocab.gguf", b.Build());
}

StatusOr<std::unique_ptr<Engine>> Make(const std::string& model, const std::string& tokenizer,
                                       const std::string& chat_template_file = "") {
  EngineOptions o;
  o.model = model;
  o.tokenizer = tokenizer;
  o.chat_template_file = chat_template_file;
  o.backend.threads = 1;
  o.kv_tokens = 256;
  return Engine::Create(o);
}

int64_t Count(const std::vector<int32_t>& ids, int32_t id) { return std::count(ids.begin(), ids.end(), id); }

TEST(ChatTemplateEngine, UnrunnableModelTemplateFailsChatOnly) {
  auto e = Make("synthetic:tiny", TinyVocab("{{ messages | from_json }}"));
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ((*e)->chat_template(), nullptr);
  auto plain = (*e)->Tokenize("abc", false);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();  // completions keep working
  auto chat = (*e)->TokenizeChat({{"user", "hi"}});
  ASSERT_FALSE(chat.ok());
  EXPECT_EQ(chat.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(chat.status().message().find("unsupported filter 'from_json'"), std::string::npos)
      << chat.status().ToString();
}

TEST(ChatTemplateEngine, TemplateWrittenBosIsNotDoubled) {
  // The template writes the BOS: exactly one, first.
  auto own = Make("synthetic:tiny", TinyVocab("{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}"));
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  auto ids = (*own)->TokenizeChat({{"user", "hi"}});
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(Count(*ids, kBos), 1);
  EXPECT_EQ(ids->front(), kBos);
  // The template does not: the tokenizer adds it (add_bos), once.
  auto plain = Make("synthetic:tiny", TinyVocab("{% for m in messages %}[{{ m.content }}]{% endfor %}"));
  ASSERT_TRUE(plain.ok());
  auto ids2 = (*plain)->TokenizeChat({{"user", "hi"}});
  ASSERT_TRUE(ids2.ok());
  EXPECT_EQ(Count(*ids2, kBos), 1);
  EXPECT_EQ(ids2->front(), kBos);
  // Content spelling the BOS text is plain text, so the tokenizer still adds the real one.
  auto ids3 = (*plain)->TokenizeChat({{"user", "<s>"}});
  ASSERT_TRUE(ids3.ok());
  EXPECT_EQ(Count(*ids3, kBos), 1);
}

TEST(ChatTemplateEngine, ChatTemplateFileOverridesTheModels) {
  const std::string file =
      WriteTemp("override.jinja", "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{{ eos_token }}");
  auto e = Make(SLIM_DEFAULT_MODEL, "", file);
  ASSERT_TRUE(e.ok()) << e.status().ToString() << " (run scripts/fetch-model.sh)";
  ASSERT_NE((*e)->chat_template(), nullptr);
  auto text = (*e)->chat_template()->Apply({{"user", "Hi"}});
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text, "<user>Hi<|im_end|>");  // SmolLM2's EOS is <|im_end|>
}

TEST(ChatTemplateEngine, UnreadableOrUnrunnableFileIsAStartUpError) {
  auto missing = Make(SLIM_DEFAULT_MODEL, "", ::testing::TempDir() + "no-such-template.jinja");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("no-such-template.jinja"), std::string::npos);
  const std::string bad = WriteTemp("bad.jinja", "{% include 'x.jinja' %}");
  auto e = Make(SLIM_DEFAULT_MODEL, "", bad);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(e.status().message().find("bad.jinja"), std::string::npos) << e.status().ToString();
  EXPECT_NE(e.status().message().find("'include'"), std::string::npos) << e.status().ToString();
}

}  // namespace
}  // namespace slim
