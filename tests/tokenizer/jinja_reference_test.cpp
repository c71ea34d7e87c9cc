// The chat templates llama.cpp ships (70 in the llama-cpp-python 0.3.36 sdist), rendered by our
// Jinja interpreter through ChatTemplate and compared byte for byte with Python's jinja2 as
// transformers runs it (models/templates/reference.json from scripts/fetch-templates.sh). A
// conversation matches when both texts are equal or both raise; a template is identical when
// every conversation matches. Templates we cannot run must be refused (Unimplemented, naming
// the construct), never rendered differently.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/chat_template.h"

namespace slim {
namespace {

using json = nlohmann::ordered_json;

const std::string kDir = std::string(SLIM_SOURCE_DIR) + "/models/templates/";

// Every template that renders identically today; a regression of any of them fails the test.
const std::set<std::string> kExpectedIdentical = {
    "Apertus-8B-Instruct.jinja",
    "Apriel-1.6-15b-Thinker-fixed.jinja",
    "Bielik-11B-v3.0-Instruct.jinja",
    "ByteDance-Seed-OSS.jinja",
    "Cohere2MoE.jinja",
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja",
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja",
    "GLM-4.6.jinja",
    "GLM-4.7-Flash.jinja",
    "GigaChat3-10B-A1.8B.jinja",
    "GigaChat3.1-10B-A1.8B.jinja",
    "HuggingFaceTB-SmolLM3-3B.jinja",
    "Kimi-K2-Instruct.jinja",
    "Kimi-K2-Thinking.jinja",
    "Kimi-K3.jinja",
    "LFM2-8B-A1B.jinja",
    "LFM2.5-8B-A1B.jinja",
    "LFM2.5-Instruct.jinja",
    "MiMo-VL.jinja",
    "MiniMax-M1.jinja",
    "MiniMax-M2.jinja",
    "MiniMax-M3.jinja",
    "Mistral-Small-3.2-24B-Instruct-2506.jinja",
    "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja",
    "NVIDIA-Nemotron-Nano-v2.jinja",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
    "Qwen-QwQ-32B.jinja",
    "Qwen-Qwen2.5-7B-Instruct.jinja",
    "Qwen-Qwen3-0.6B.jinja",
    "Qwen3-Coder.jinja",
    "Qwen3.5-4B.jinja",
    "Reka-Edge.jinja",
    "Spark2.5.jinja",
    "StepFun3.5-Flash.jinja",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
    "deepseek-ai-DeepSeek-V3.1.jinja",
    "deepseek-ai-DeepSeek-V3.2.jinja",
    "deepseek-ai-DeepSeek-V4-Flash-0731.jinja",
    "deepseek-ai-DeepSeek-V4.jinja",
    "fireworks-ai-llama-3-firefunction-v2.jinja",
    "google-gemma-2-2b-it.jinja",
    "google-gemma-4-31B-it-interleaved.jinja",
    "google-gemma-4-31B-it.jinja",
    "ibm-granite-granite-3.3-2B-Instruct.jinja",
    "ibm-granite-granite-4.0.jinja",
    "ibm-granite-granite-4.1.jinja",
    "inclusionai-ling-3.0-flash.jinja",
    "llama-cpp-deepseek-r1.jinja",
    "llama-cpp-rwkv-world.jinja",
    "meetkai-functionary-medium-v3.1.jinja",
    "meetkai-functionary-medium-v3.2.jinja",
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "meta-llama-Llama-3.3-70B-Instruct.jinja",
    "microsoft-Phi-3.5-mini-instruct.jinja",
    "mistralai-Ministral-3-14B-Reasoning-2512.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "moonshotai-Kimi-K2.jinja",
    "muse-glimmer.jinja",
    "openai-gpt-oss-120b.jinja",
    "openbmb-MiniCPM5-1B.jinja",
    "poolside-Laguna-S-2.1.jinja",
    "poolside-Laguna-XS-2.1.jinja",
    "poolside-Laguna-XS.2.jinja",
    "tencent-Hy3.jinja",
    "unsloth-Apriel-1.5.jinja",
    "unsloth-mistral-Devstral-Small-2507.jinja",
    "upstage-Solar-Open-100B.jinja",
};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Outcome {
  enum { kIdentical, kRefused, kMismatch } kind = kIdentical;
  std::string detail;
  int equal_texts = 0, both_raise = 0;  // conversations
};

Outcome Check(const std::string& name, const json& refs, const json& conversations, const ChatTemplateOptions& o) {
  auto tmpl = ChatTemplate::Create(ReadFile(kDir + name), o);
  Outcome out;
  for (size_t i = 0; i < refs.size(); ++i) {
    const json& conv = conversations[i];
    const json& ref = refs[i];
    std::vector<ChatMessage> messages;
    for (const json& m : conv["messages"]) messages.push_back({m["role"], m["content"]});
    StatusOr<std::string> ours = tmpl.ok() ? tmpl->Apply(messages, conv["add_generation_prompt"].get<bool>())
                                           : StatusOr<std::string>(tmpl.status());
    const std::string conv_name = conv["name"];
    if (ref.contains("error")) {
      if (!ours.ok()) {
        ++out.both_raise;
        continue;
      }
      out.kind = Outcome::kMismatch;
      out.detail = conv_name + ": jinja2 raised (" + ref["error"].get<std::string>() + ") but we rendered";
      return out;
    }
    if (ours.ok() && *ours == ref["text"].get<std::string>()) {
      ++out.equal_texts;
      continue;
    }
    if (!ours.ok() && ours.status().code() == StatusCode::kUnimplemented) {
      out.kind = Outcome::kRefused;
      out.detail = conv_name + ": " + ours.status().message();
      return out;
    }
    out.kind = Outcome::kMismatch;
    if (!ours.ok()) {
      out.detail = conv_name + ": we raised " + ours.status().ToString();
    } else {
      const std::string& want = ref["text"].get<std::string>();
      size_t at = 0;
      while (at < want.size() && at < ours->size() && want[at] == (*ours)[at]) ++at;
      out.detail = conv_name + ": differs at byte " + std::to_string(at) + ": jinja2 '" + want.substr(at, 60) +
                   "' vs ours '" + ours->substr(at, 60) + "'";
    }
    return out;
  }
  return out;
}

TEST(JinjaReference, TemplatesRenderAsJinja2Does) {
  std::ifstream f(kDir + "reference.json");
  ASSERT_TRUE(f.good()) << kDir << "reference.json is missing: run scripts/fetch-templates.sh";
  const json ref = json::parse(f);
  ChatTemplateOptions o;
  o.bos_token = ref["bos_token"];
  o.eos_token = ref["eos_token"];
  std::map<std::string, Outcome> outcomes;
  int identical = 0, refused = 0, mismatched = 0, texts = 0, raises = 0;
  for (const auto& [name, refs] : ref["templates"].items()) {
    const Outcome r = Check(name, refs, ref["conversations"], o);
    outcomes[name] = r;
    identical += r.kind == Outcome::kIdentical;
    refused += r.kind == Outcome::kRefused;
    mismatched += r.kind == Outcome::kMismatch;
    texts += r.equal_texts;
    raises += r.both_raise;
    if (r.kind != Outcome::kIdentical) {
      std::cout << (r.kind == Outcome::kRefused ? "refused   " : "MISMATCH  ") << name << ": " << r.detail << "\n";
    }
  }
  std::cout << identical << " identical, " << refused << " refused, " << mismatched << " mismatched of "
            << outcomes.size() << " templates; " << texts << " renders byte-identical, " << raises
            << " raise in both\n";
  EXPECT_EQ(outcomes.size(), 70u) << "the llama-cpp-python 0.3.36 sdist ships 70 templates";
  EXPECT_GE(identical, 60);
  EXPECT_EQ(mismatched, 0) << "a template we cannot render identically must be refused, naming the construct";
  for (const std::string& name : kExpectedIdentical) {
    ASSERT_TRUE(outcomes.count(name)) << name << " is not in the reference";
    EXPECT_EQ(outcomes[name].kind, Outcome::kIdentical) << name << " regressed: " << outcomes[name].detail;
  }
  for (const char* family : {"meta-llama-Llama-3.1-8B-Instruct.jinja", "Qwen-Qwen2.5-7B-Instruct.jinja",
                             "HuggingFaceTB-SmolLM3-3B.jinja", "mistralai-Mistral-Nemo-Instruct-2407.jinja",
                             "google-gemma-2-2b-it.jinja", "microsoft-Phi-3.5-mini-instruct.jinja"}) {
    EXPECT_TRUE(kExpectedIdentical.count(family)) << family << " must be among the identical templates";
  }
}

// Truncated real templates (malformed input of realistic shape) are errors or renders, never
// crashes; the errors are syntax (InvalidArgument), refusals (Unimplemented) or probe failures.
TEST(JinjaReference, TruncatedTemplatesFailCleanly) {
  std::ifstream f(kDir + "reference.json");
  ASSERT_TRUE(f.good()) << kDir << "reference.json is missing: run scripts/fetch-templates.sh";
  const json ref = json::parse(f);
  int failed = 0, cuts = 0;
  for (const auto& [name, refs] : ref["templates"].items()) {
    const std::string src = ReadFile(kDir + name);
    for (int k = 1; k < 40; ++k) {
      const size_t cut = src.size() * static_cast<size_t>(k) / 40;
      auto t = ChatTemplate::Create(src.substr(0, cut), {"<s>", "</s>"});
      ++cuts;
      if (t.ok()) {
        (void)t->Apply({{"system", "s"}, {"user", "u"}, {"assistant", "a"}});
        continue;
      }
      ++failed;
      const StatusCode c = t.status().code();
      EXPECT_TRUE(c == StatusCode::kInvalidArgument || c == StatusCode::kUnimplemented ||
                  c == StatusCode::kFailedPrecondition)
          << name << " cut at " << cut << ": " << t.status().ToString();
    }
  }
  EXPECT_GT(failed, cuts / 2);  // most truncations are syntax errors
}

}  // namespace
}  // namespace slim
