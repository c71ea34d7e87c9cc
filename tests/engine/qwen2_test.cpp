// Qwen2 (QKV biases, GPT-NeoX RoPE pairs, 151,936-token byte-level BPE, its own ChatML
// template) on the real Qwen2.5-Coder-0.5B-Instruct GGUF (scripts/fetch-model.sh
// qwen2.5-coder-0.5b) against llama.cpp's fixtures in tests/fixtures/qwen2.5-coder-0.5b
// (scripts/make-fixtures.py --jinja): token ids, last-position logits, greedy continuations,
// and the chat template rendered as jinja2 renders it. Also: the model files Model::Load must
// refuse by tensor name (tests/fixtures/malformed, stage "load").
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "tests/engine/llamacpp_check.h"

namespace slim {
namespace {

using json = nlohmann::json;
using testing::LoadFixtureJson;

constexpr const char* kFetch = "scripts/fetch-model.sh qwen2.5-coder-0.5b";

std::string FixtureDir() { return std::string(SLIM_SOURCE_DIR) + "/tests/fixtures/qwen2.5-coder-0.5b"; }

std::unique_ptr<Engine>& SharedEngine() {
  static std::unique_ptr<Engine> engine = testing::MakeModelEngine(SLIM_QWEN05_MODEL, "f32", kFetch);
  return engine;
}

TEST(Qwen2, ConfigOfTheRealFile) {
  Engine* e = SharedEngine().get();
  ASSERT_TRUE(e);
  const ModelConfig& c = e->config();
  EXPECT_EQ(c.arch, "qwen2");
  EXPECT_EQ(c.n_layers, 24);
  EXPECT_EQ(c.d_model, 896);
  EXPECT_EQ(c.n_heads, 14);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.context_length, 32768);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.rope_neox);
  EXPECT_FALSE(c.tied_embeddings);
}

TEST(Qwen2, TokenIdsMatchLlamaCpp) {
  Engine* e = SharedEngine().get();
  ASSERT_TRUE(e);
  json j = LoadFixtureJson(FixtureDir() + "/tokens.json");
  ASSERT_GE(j["cases"].size(), 40u);
  int failures = 0;
  for (const auto& c : j["cases"]) {
    const std::string text = c["text"];
    auto ids = e->Tokenize(text, c["parse_special"].get<bool>());
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    const auto want = c["ids"].get<std::vector<int32_t>>();
    if (*ids != want) ++failures;
    EXPECT_EQ(*ids, want) << "text: " << json(text).dump() << " special " << c["parse_special"];
  }
  EXPECT_EQ(failures, 0);
}

TEST(Qwen2, LastPositionLogitsAgreeWithLlamaCpp) {
  testing::CheckLogits(SharedEngine().get(), FixtureDir(), false, "qwen2 0.5b", 3);
}

TEST(Qwen2, GreedyContinuationsMatchLlamaCpp) { testing::CheckGreedy(SharedEngine().get(), FixtureDir(), 4); }

// Our ChatML renderer against jinja2 over the GGUF's own template (Qwen inserts its default
// system message), then the answer of a free-running greedy chat.
TEST(Qwen2, ChatTemplateRendersAsJinjaAndAnswerNamesParis) {
  Engine* e = SharedEngine().get();
  ASSERT_TRUE(e);
  ASSERT_NE(e->chat_template(), nullptr);
  json j = LoadFixtureJson(FixtureDir() + "/greedy.json");
  int chats = 0;
  for (const auto& c : j["cases"]) {
    if (!c.contains("messages")) continue;
    ++chats;
    std::vector<ChatMessage> messages;
    for (const auto& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    auto text = e->chat_template()->Apply(messages);
    ASSERT_TRUE(text.ok()) << text.status().ToString();
    EXPECT_EQ(*text, c["prompt_text"].get<std::string>()) << c["name"];
    auto ids = e->TokenizeChat(messages);
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    EXPECT_EQ(*ids, c["prompt_ids"].get<std::vector<int32_t>>()) << c["name"];
    if (c["name"] == "chat_capital") {
      SamplingParams sp;  // greedy
      StopParams st;
      st.max_tokens = 32;
      auto g = e->Generate(*ids, sp, st);
      ASSERT_TRUE(g.ok()) << g.status().ToString();
      std::printf("[qwen2 chat] %s\n", g->text.c_str());
      EXPECT_NE(g->text.find("Paris"), std::string::npos) << g->text;
      EXPECT_EQ(g->finish, FinishReason::kEndOfGeneration) << g->text;
    }
  }
  EXPECT_GE(chats, 2);
}

// Files that parse and configure, but that no engine may run as they are: a Qwen2 model with
// missing or mis-shaped biases, tensors the layer loop would not read. Engine::Create refuses
// each with the tensor's name and the file's path (and a server stays up: it never loads them).
TEST(ModelLoad, RefusesFilesByTensorName) {
  const std::filesystem::path dir = std::filesystem::path(SLIM_SOURCE_DIR) / "tests/fixtures/malformed";
  json expected = LoadFixtureJson((dir / "expected.json").string());
  int n = 0;
  for (const auto& [name, want] : expected.items()) {
    if (want["stage"] != "load") continue;
    ++n;
    SCOPED_TRACE(name);
    EngineOptions o;
    o.model = (dir / name).string();
    o.kv_tokens = 256;
    auto e = Engine::Create(o);
    ASSERT_FALSE(e.ok()) << "loaded, but should have failed with: " << want["error"];
    const std::string code = want.value("code", "InvalidArgument");
    EXPECT_EQ(e.status().code(),
              code == "Unimplemented" ? StatusCode::kUnimplemented : StatusCode::kInvalidArgument)
        << e.status().ToString();
    EXPECT_NE(e.status().message().find(want["error"].get<std::string>()), std::string::npos)
        << e.status().message();
    EXPECT_NE(e.status().message().find(o.model), std::string::npos) << e.status().message();
  }
  EXPECT_GE(n, 4);
}

}  // namespace
}  // namespace slim
