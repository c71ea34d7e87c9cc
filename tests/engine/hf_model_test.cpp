// Hugging Face checkpoints through Engine/Model on the CPU backend against transformers
// (scripts/make-hf-fixtures.py: tiny random-weight LLaMA-3 with llama3 RoPE scaling and tied
// embeddings, LLaMA-2 style in bf16, sharded Qwen2 with QKV biases, Mistral in fp16 with an
// inactive sliding window and head_dim != hidden / heads): last-position logits of token-id
// prompts, teacher-forced and free-running greedy continuations. Also: the same checkpoint
// with a transformers-v4 style config.json, and a Mistral whose sliding window is active for
// the context, which is refused naming sliding_window.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "engine/engine.h"

namespace slim {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Both sides compute in fp32 from the same weights: the logits differ only by summation order.
// Measured max |ours - transformers| / (logit range) <= 1e-6 on these models; 1e-4 leaves room
// for BLAS kernels of other machines while a wrong RoPE pairing or scaling band moves the
// logits by whole units.
constexpr double kRelTol = 1e-4;
// A greedy step may differ from transformers only where transformers' own top-2 margin is
// below this (an fp32 near-tie).
constexpr double kTieMargin = 1e-3;

const fs::path kHf = fs::path(SLIM_SOURCE_DIR) / "tests" / "fixtures" / "hf";

json LoadJson(const fs::path& p) {
  std::ifstream in(p);
  if (!in) {
    ADD_FAILURE() << "missing " << p << ": run scripts/make-hf-fixtures.py";
    return json::object();
  }
  return json::parse(in);
}

std::unique_ptr<Engine> Open(const std::string& dir, int64_t context = 0) {
  EngineOptions o;
  o.model = dir;
  o.kv_tokens = 1024;
  o.context_length = context;
  o.backend.threads = 2;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

int Argmax(const std::vector<float>& v) { return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin()); }

// Logits and greedy continuations of `dir` against reference.json in `ref_dir`.
void CheckAgainstTransformers(const std::string& dir, const fs::path& ref_dir) {
  std::unique_ptr<Engine> e = Open(dir);
  ASSERT_TRUE(e);
  EXPECT_NE(e->Describe().find("Hugging Face safetensors checkpoint"), std::string::npos) << e->Describe();
  const json ref = LoadJson(ref_dir / "reference.json");
  ASSERT_GE(ref["cases"].size(), 4u);
  const int vocab = e->config().vocab_size;
  for (const auto& c : ref["cases"]) {
    const auto ids = c["prompt_ids"].get<std::vector<int32_t>>();
    const auto want = c["logits"].get<std::vector<float>>();
    ASSERT_EQ(want.size(), static_cast<size_t>(vocab));
    auto r = e->Prefill(1, ids);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const auto [lo, hi] = std::minmax_element(want.begin(), want.end());
    const double range = *hi - *lo;
    double max_abs = 0.0;
    for (int i = 0; i < vocab; ++i) max_abs = std::max(max_abs, std::fabs(double{r->logits[i]} - want[i]));
    std::printf("[hf] %-14s %3zu tokens: max |ours - transformers| %.3g, logit range %.2f (relative %.3g)\n",
                ref["model"].get<std::string>().c_str(), ids.size(), max_abs, range, max_abs / range);
    EXPECT_LT(max_abs, kRelTol * range) << ids.size() << " tokens";
    EXPECT_EQ(Argmax(r->logits), Argmax(want));

    // Teacher-forced: our argmax at each step against transformers' token, then its token fed.
    const auto greedy = c["greedy"].get<std::vector<int32_t>>();
    const auto margins = c["greedy_margins"].get<std::vector<double>>();
    std::vector<float> logits = r->logits;
    bool all_same = true;
    for (size_t s = 0; s < greedy.size(); ++s) {
      if (Argmax(logits) != greedy[s]) {
        all_same = false;
        EXPECT_LT(margins[s], kTieMargin) << ids.size() << " tokens, step " << s << ": a real divergence";
      }
      if (s + 1 < greedy.size()) {
        DecodeItem it{1, greedy[s]};
        ASSERT_TRUE(e->Decode({&it, 1}, &logits).ok());
      }
    }
    ASSERT_TRUE(e->Release(1).ok());
    // Free-running greedy through the engine's own loop.
    SamplingParams sp;
    StopParams st;
    st.max_tokens = static_cast<int32_t>(greedy.size());
    st.ignore_eos = true;
    auto g = e->Generate(ids, sp, st);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    if (all_same) {
      EXPECT_EQ(g->token_ids, greedy) << ids.size() << " tokens";
    }
  }
}

TEST(HfModel, Llama3TiedMatchesTransformers) { CheckAgainstTransformers((kHf / "llama3_tied").string(), kHf / "llama3_tied"); }
TEST(HfModel, Llama2UntiedBf16MatchesTransformers) {
  CheckAgainstTransformers((kHf / "llama2_untied").string(), kHf / "llama2_untied");
}
TEST(HfModel, Qwen2ShardedMatchesTransformers) { CheckAgainstTransformers((kHf / "qwen2_tied").string(), kHf / "qwen2_tied"); }
TEST(HfModel, MistralF16MatchesTransformers) {
  CheckAgainstTransformers((kHf / "mistral_window").string(), kHf / "mistral_window");
}

TEST(HfModel, ConfigsAreReadAsWritten) {
  std::unique_ptr<Engine> e = Open((kHf / "llama3_tied").string());
  ASSERT_TRUE(e);
  const ModelConfig& c = e->config();
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.name, "llama3_tied");
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_TRUE(c.rope_neox);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c.rope_scaling.original_context, 64);
  EXPECT_FALSE(e->tokenizer());
  EXPECT_EQ(e->Tokenize("hi", false).status().code(), StatusCode::kFailedPrecondition);
  e = Open((kHf / "mistral_window").string());
  ASSERT_TRUE(e);
  EXPECT_EQ(e->config().head_dim, 32);
  EXPECT_EQ(e->config().sliding_window, 4096);
  e = Open((kHf / "qwen2_tied").string());
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->config().qkv_bias);
  EXPECT_EQ(e->config().sliding_window, 0);  // use_sliding_window false
  EXPECT_NE(e->Describe().find("4 shards"), std::string::npos) << e->Describe();
}

// A copy of fixture `name` in a fresh temp dir whose config.json is edit(config).
fs::path CopyWithConfig(const std::string& name, const std::function<void(json&)>& edit) {
  const fs::path dir = fs::temp_directory_path() / ("hf_model_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& f : fs::directory_iterator(kHf / name)) {
    if (f.path().filename() != "config.json") fs::copy_file(f.path(), dir / f.path().filename());
  }
  json config = LoadJson(kHf / name / "config.json");
  edit(config);
  std::ofstream(dir / "config.json") << config.dump(2);
  return dir;
}

// transformers v4 wrote rope_theta and rope_scaling where v5 writes rope_parameters: the same
// checkpoint with the old keys gives the same logits.
TEST(HfModel, TransformersV4ConfigGivesTheSameModel) {
  const fs::path dir = CopyWithConfig("llama3_tied", [](json& c) {
    json rp = c["rope_parameters"];
    c.erase("rope_parameters");
    c["rope_theta"] = rp["rope_theta"];
    rp.erase("rope_theta");
    c["rope_scaling"] = rp;
    c["torch_dtype"] = c["dtype"];
    c.erase("dtype");
  });
  CheckAgainstTransformers(dir.string(), kHf / "llama3_tied");
  fs::remove_all(dir);
}

TEST(HfModel, ActiveSlidingWindowIsRefused) {
  const fs::path dir = CopyWithConfig("mistral_window", [](json& c) { c["sliding_window"] = 64; });
  EngineOptions o;
  o.model = dir.string();
  o.kv_tokens = 1024;
  auto e = Engine::Create(o);  // context: max_position_embeddings = 2048 > 64
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find("'sliding_window' = 64"), std::string::npos) << e.status().message();
  EXPECT_NE(e.status().message().find(dir.string()), std::string::npos) << e.status().message();
  // Within the window, full attention is the same computation: it runs.
  o.context_length = 64;
  auto small = Engine::Create(o);
  EXPECT_TRUE(small.ok()) << small.status().ToString();
  fs::remove_all(dir);

  // Qwen2: only with use_sliding_window and on layers at or past max_window_layers.
  const fs::path q = CopyWithConfig("qwen2_tied", [](json& c) {
    c["use_sliding_window"] = true;
    c["sliding_window"] = 32;
    c["layer_types"] = {"full_attention", "full_attention", "sliding_attention"};
  });
  o.model = q.string();
  o.context_length = 0;
  auto qe = Engine::Create(o);
  ASSERT_FALSE(qe.ok());
  EXPECT_NE(qe.status().message().find("'sliding_window' = 32"), std::string::npos) << qe.status().message();
  fs::remove_all(q);
}

}  // namespace
}  // namespace slim
