// The default model as a Hugging Face checkpoint (scripts/make-hf-smollm2.py: the GGUF's
// weights dequantized, Q/K un-permuted to HF's rotate-half layout, stored as bf16) against the
// GGUF itself on the CPU backend: last-position logits of llama.cpp's fixture prompts are close
// (the gap is bf16 rounding of the weights) and greedy continuations of token-id prompts are
// the same tokens, except at near-ties of the GGUF path.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "engine/engine.h"
#include "tests/engine/llamacpp_check.h"

namespace slim {
namespace {

// bf16 keeps 8 mantissa bits: each weight moves by up to 2^-9 relative. Measured on these
// prompts (16-500 tokens): max |HF - GGUF| <= 0.12, rms <= 0.04, logits spanning ~30 units; a
// wrong Q/K layout or RoPE pairing moves them by whole units.
constexpr double kMaxAbsTol = 0.3;
constexpr double kRmsTol = 0.08;
// A greedy divergence is accepted only where the GGUF path's own top-2 margin is this small.
constexpr float kTieMargin = 0.3f;
constexpr int kNewTokens = 24;

std::unique_ptr<Engine> Make(const std::string& model, const char* hint) {
  EngineOptions o;
  o.model = model;
  o.kv_tokens = 2048;
  o.backend.threads = 2;
  auto e = Engine::Create(o);
  if (!e.ok()) {
    ADD_FAILURE() << e.status().ToString() << " (run " << hint << ")";
    return nullptr;
  }
  return std::move(e).value();
}

struct Engines {
  std::unique_ptr<Engine> gguf = Make(SLIM_DEFAULT_MODEL, "scripts/fetch-model.sh");
  std::unique_ptr<Engine> hf = Make(SLIM_DEFAULT_HF_MODEL, "scripts/make-hf-smollm2.py");
};

Engines& Shared() {
  static Engines e;
  return e;
}

int Argmax(const std::vector<float>& v) { return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin()); }

TEST(HfSmolLM2, SameConfigAsTheGguf) {
  Engines& e = Shared();
  ASSERT_TRUE(e.gguf && e.hf);
  const ModelConfig &g = e.gguf->config(), &h = e.hf->config();
  EXPECT_EQ(h.arch, "llama");
  EXPECT_EQ(h.n_layers, g.n_layers);
  EXPECT_EQ(h.n_heads, g.n_heads);
  EXPECT_EQ(h.n_kv_heads, g.n_kv_heads);
  EXPECT_EQ(h.d_model, g.d_model);
  EXPECT_EQ(h.d_ff, g.d_ff);
  EXPECT_EQ(h.vocab_size, g.vocab_size);
  EXPECT_EQ(h.context_length, g.context_length);
  EXPECT_EQ(h.rope_theta, g.rope_theta);
  EXPECT_EQ(h.rms_eps, g.rms_eps);
  EXPECT_EQ(h.tied_embeddings, g.tied_embeddings);
  EXPECT_TRUE(h.rope_neox);
  EXPECT_FALSE(g.rope_neox);
  EXPECT_NE(e.hf->Describe().find("Hugging Face safetensors checkpoint, 1 file, BF16"), std::string::npos)
      << e.hf->Describe();
}

TEST(HfSmolLM2, LogitsCloseToTheGguf) {
  Engines& e = Shared();
  ASSERT_TRUE(e.gguf && e.hf);
  const nlohmann::json j = testing::LoadFixtureJson(std::string(SLIM_SOURCE_DIR) + "/tests/fixtures/llamacpp/logits.json");
  int n = 0;
  for (const auto& c : j["cases"]) {
    const auto ids = c["prompt_ids"].get<std::vector<int32_t>>();
    if (ids.size() > 500) continue;
    ++n;
    auto g = e.gguf->Prefill(1, ids);
    auto h = e.hf->Prefill(1, ids);
    ASSERT_TRUE(g.ok() && h.ok()) << g.status().ToString() << " / " << h.status().ToString();
    ASSERT_TRUE(e.gguf->Release(1).ok() && e.hf->Release(1).ok());
    double max_abs = 0.0, sq = 0.0;
    for (size_t i = 0; i < g->logits.size(); ++i) {
      const double d = std::fabs(double{g->logits[i]} - h->logits[i]);
      max_abs = std::max(max_abs, d);
      sq += d * d;
    }
    const double rms = std::sqrt(sq / static_cast<double>(g->logits.size()));
    std::printf("[hf smollm2] %4zu tokens: max |HF - GGUF| %.4f rms %.4f, argmax %d / %d\n", ids.size(), max_abs, rms,
                Argmax(h->logits), Argmax(g->logits));
    EXPECT_LT(max_abs, kMaxAbsTol);
    EXPECT_LT(rms, kRmsTol);
    EXPECT_EQ(Argmax(h->logits), Argmax(g->logits));
  }
  EXPECT_GE(n, 3);
}

TEST(HfSmolLM2, GreedyTokensAsTheGguf) {
  Engines& e = Shared();
  ASSERT_TRUE(e.gguf && e.hf);
  const nlohmann::json j = testing::LoadFixtureJson(std::string(SLIM_SOURCE_DIR) + "/tests/fixtures/llamacpp/greedy.json");
  SamplingParams sp;  // greedy
  StopParams st;
  st.max_tokens = kNewTokens;
  st.ignore_eos = true;
  int n = 0;
  for (const auto& c : j["cases"]) {
    const auto ids = c["prompt_ids"].get<std::vector<int32_t>>();
    const std::string name = c["name"];
    ++n;
    auto want = e.gguf->Generate(ids, sp, st);
    ASSERT_TRUE(want.ok()) << want.status().ToString();
    // Teacher-forced on the GGUF path's tokens, each step's argmax compared where the GGUF's
    // margin is clear.
    auto g = e.gguf->Prefill(1, ids);
    auto h = e.hf->Prefill(1, ids);
    ASSERT_TRUE(g.ok() && h.ok());
    std::vector<float> gl = g->logits, hl = h->logits;
    int mismatches = 0;
    for (size_t s = 0; s < want->token_ids.size(); ++s) {
      const int32_t t = want->token_ids[s];
      ASSERT_EQ(Argmax(gl), t);  // the GGUF path's own greedy token
      if (Argmax(hl) != t) {
        ++mismatches;
        std::vector<float> sorted = gl;
        std::nth_element(sorted.begin(), sorted.begin() + 1, sorted.end(), std::greater<float>());
        const float margin = sorted[0] - sorted[1];
        std::printf("[hf smollm2] %s step %zu: HF %d, GGUF %d, GGUF margin %.4f\n", name.c_str(), s, Argmax(hl), t,
                    margin);
        EXPECT_LT(margin, kTieMargin) << name << " step " << s << ": a real divergence";
      }
      if (s + 1 < want->token_ids.size()) {
        DecodeItem it{1, t};
        ASSERT_TRUE(e.gguf->Decode({&it, 1}, &gl).ok());
        ASSERT_TRUE(e.hf->Decode({&it, 1}, &hl).ok());
      }
    }
    ASSERT_TRUE(e.gguf->Release(1).ok() && e.hf->Release(1).ok());
    auto got = e.hf->Generate(ids, sp, st);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    std::printf("[hf smollm2] %-12s %zu prompt tokens: %d of %zu teacher-forced steps differ\n", name.c_str(),
                ids.size(), mismatches, want->token_ids.size());
    if (mismatches == 0) {
      EXPECT_EQ(got->token_ids, want->token_ids) << name;
    }
  }
  EXPECT_GE(n, 3);
}

}  // namespace
// The checkpoint's tokenizer.json (VocabFromHfDir) encodes text and chats as the GGUF's
// vocabulary does, and decodes to the same text.
TEST(HfSmolLM2, TokenizerJsonEncodesAsTheGguf) {
  Engines& e = Shared();
  ASSERT_TRUE(e.gguf && e.hf);
  ASSERT_NE(e.hf->tokenizer(), nullptr);
  for (const std::string text : {"Hello world", "The capital of France is", "ied 4 ½ months, 1234567 + x",
                                 " leading spaces\n\ttabs <|im_start|> and émigré"}) {
    auto g = e.gguf->Tokenize(text, false);
    auto h = e.hf->Tokenize(text, false);
    ASSERT_TRUE(g.ok() && h.ok()) << text;
    EXPECT_EQ(*g, *h) << text;
    EXPECT_EQ(e.hf->tokenizer()->Decode(*h), e.gguf->tokenizer()->Decode(*g)) << text;
  }
  const std::vector<ChatMessage> chat = {{"system", "Be brief."}, {"user", "What is 2 + 2?"}};
  auto g = e.gguf->TokenizeChat(chat);
  auto h = e.hf->TokenizeChat(chat);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(*g, *h);
  EXPECT_EQ(e.hf->tokenizer()->eos_id(), e.gguf->tokenizer()->eos_id());
}

}  // namespace slim
