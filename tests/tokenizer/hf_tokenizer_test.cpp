// VocabFromHfDir against Hugging Face `tokenizers`: the folders and expected ids that
// scripts/make-hf-tokenizers.py writes to models/hf-tokenizers/ (tokenizer.json converted from our
// GGUFs by transformers, ids from tokenizers.Tokenizer.encode(text, add_special_tokens=False), which
// always matches added tokens: parse_special here). Also: the SmolLM2 folder encodes like the
// SmolLM2 GGUF, and malformed or unsupported tokenizer.json content is refused by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/gguf/gguf_file.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/vocab.h"

namespace slim {
namespace {

const std::string kDir = SLIM_SOURCE_DIR "/models/hf-tokenizers";

const nlohmann::json& Expected() {
  static const nlohmann::json j = [] {
    std::ifstream in(kDir + "/expected.json");
    return nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  }();
  return j;
}

std::string Ids(const std::vector<int32_t>& ids) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < ids.size(); ++i) os << (i ? " " : "") << ids[i];
  os << "]";
  return os.str();
}

StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& dir) {
  SLIM_ASSIGN_OR_RETURN(VocabData v, VocabFromHfDir(dir));
  return Tokenizer::Create(std::move(v));
}

EncodeOptions HfOptions() {
  EncodeOptions o;
  o.parse_special = true;
  return o;
}

class HfTokenizerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HfTokenizerTest, MatchesHfTokenizers) {
  const nlohmann::json& e = Expected();
  ASSERT_TRUE(e.is_object()) << kDir << "/expected.json is missing or invalid: run scripts/make-hf-tokenizers.py";
  const auto& strings = e.at("strings");
  const auto& want = e.at("tokenizers_ids").at(GetParam());
  ASSERT_EQ(strings.size(), want.size());
  ASSERT_GE(strings.size(), 30u);
  auto tok = Load(kDir + "/" + GetParam());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  size_t mismatches = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const std::string text = strings[i].get<std::string>();
    const std::vector<int32_t> ids_want = want[i].get<std::vector<int32_t>>();
    auto ids = (*tok)->Encode(text, HfOptions());
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    // The cheap length bound the engine checks before encoding holds.
    EXPECT_GE(ids->size() * (*tok)->max_input_bytes_per_token(), (*tok)->CoveredBytes(text)) << GetParam();
    if (*ids != ids_want) {
      ++mismatches;
      ADD_FAILURE() << GetParam() << ": " << ::testing::PrintToString(text) << "\n  tokenizers: " << Ids(ids_want)
                    << "\n  ours:       " << Ids(*ids);
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << strings.size();
}

INSTANTIATE_TEST_SUITE_P(Families, HfTokenizerTest,
                         ::testing::Values("smollm2", "llama-bpe", "llama-bpe-variant", "llama-spm", "phi-3", "qwen2", "qwen2-variant",
                                           "gpt-2", "falcon", "starcoder", "deepseek-llm"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string s = info.param;
                           for (char& c : s) c = (c == '-') ? '_' : c;
                           return s;
                         });

TEST(HfTokenizer, ReadsSpecialTokensAndConfig) {
  auto v = VocabFromHfDir(kDir + "/qwen2-variant");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->model, "gpt2");
  EXPECT_TRUE(v->nfc);
  EXPECT_FALSE(v->add_bos);
  EXPECT_EQ(v->tokens[v->bos_id], "<|endoftext|>");  // from an AddedToken dict
  EXPECT_EQ(v->tokens[v->eot_id], "<|im_end|>");
  EXPECT_EQ(v->token_types[v->eot_id], TokenType::kControl);
  EXPECT_NE(v->chat_template.find("<|im_start|>"), std::string::npos);

  auto spm = VocabFromHfDir(kDir + "/llama-spm");
  ASSERT_TRUE(spm.ok()) << spm.status().ToString();
  EXPECT_EQ(spm->model, "hf-bpe");
  EXPECT_FALSE(spm->byte_level);
  EXPECT_TRUE(spm->add_bos);  // TemplateProcessing puts <s> first
  EXPECT_EQ(spm->tokens[spm->bos_id], "<s>");
  const auto byte_a = std::find(spm->tokens.begin(), spm->tokens.end(), "<0x41>");
  ASSERT_NE(byte_a, spm->tokens.end());
  EXPECT_EQ(spm->token_types[byte_a - spm->tokens.begin()], TokenType::kByte);
}

// The SmolLM2 tokenizer.json encodes every string as the SmolLM2 GGUF's vocabulary does.
TEST(HfTokenizer, SmolLm2FolderMatchesGguf) {
  auto file = gguf::GgufFile::Open(SLIM_DEFAULT_MODEL);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto gv = VocabFromGguf(**file);
  ASSERT_TRUE(gv.ok());
  auto gguf_tok = Tokenizer::Create(*gv);
  ASSERT_TRUE(gguf_tok.ok());
  auto hf_tok = Load(kDir + "/smollm2");
  ASSERT_TRUE(hf_tok.ok()) << hf_tok.status().ToString();
  ASSERT_EQ((*hf_tok)->vocab_size(), (*gguf_tok)->vocab_size());
  const nlohmann::json& e = Expected();
  ASSERT_TRUE(e.is_object());
  size_t mismatches = 0;
  for (const auto& s : e.at("strings")) {
    const std::string text = s.get<std::string>();
    auto a = (*gguf_tok)->Encode(text, HfOptions());
    auto b = (*hf_tok)->Encode(text, HfOptions());
    ASSERT_TRUE(a.ok() && b.ok());
    if (*a != *b) {
      ++mismatches;
      ADD_FAILURE() << ::testing::PrintToString(text) << "\n  gguf: " << Ids(*a) << "\n  json: " << Ids(*b);
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

// Writes a tokenizer.json (and nothing else) into a fresh folder.
std::string WriteTokenizerJson(const std::string& name, const nlohmann::json& j) {
  const std::string dir = ::testing::TempDir() + "/hf_" + name;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokenizer.json") << j.dump();
  return dir;
}

nlohmann::json TinyBpe() {
  return nlohmann::json::parse(R"({
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
    "added_tokens": [], "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "decoder": {"type": "ByteLevel"}, "post_processor": null})");
}

TEST(HfTokenizer, RefusesUnsupportedContentByName) {
  EXPECT_EQ(VocabFromHfDir(::testing::TempDir() + "/no-such-dir").status().code(), StatusCode::kNotFound);
  {
    auto ok = VocabFromHfDir(WriteTokenizerJson("ok", TinyBpe()));
    ASSERT_TRUE(ok.ok()) << ok.status().ToString();
    EXPECT_EQ(ok->merges, std::vector<std::string>{"a b"});
  }
  struct Case {
    const char* name;
    const char* pointer;
    const char* value;
    const char* named;
    StatusCode code;
  };
  const Case cases[] = {
      {"wordpiece", "/model/type", R"("WordPiece")", "WordPiece", StatusCode::kUnimplemented},
      {"unigram", "/model/type", R"("Unigram")", "Unigram", StatusCode::kUnimplemented},
      {"nfkc", "/normalizer", R"({"type": "NFKC"})", "NFKC", StatusCode::kUnimplemented},
      {"bert_pre", "/pre_tokenizer", R"({"type": "BertPreTokenizer"})", "BertPreTokenizer", StatusCode::kUnimplemented},
      {"wpm_decoder", "/decoder", R"({"type": "WordPiece"})", "WordPiece", StatusCode::kUnimplemented},
      {"split_removed", "/pre_tokenizer",
       R"({"type": "Split", "pattern": {"Regex": "x"}, "behavior": "Removed", "invert": false})", "Removed",
       StatusCode::kUnimplemented},
      {"bad_merge", "/model/merges", R"([42])", "model.merges[0]", StatusCode::kInvalidArgument},
      {"bad_vocab", "/model/vocab", R"({"a": "zero"})", "model.vocab", StatusCode::kInvalidArgument},
      {"lstrip", "/added_tokens", R"([{"id": 3, "content": "<x>", "special": true, "lstrip": true}])", "lstrip",
       StatusCode::kUnimplemented},
  };
  for (const Case& c : cases) {
    nlohmann::json j = TinyBpe();
    j[nlohmann::json::json_pointer(c.pointer)] = nlohmann::json::parse(c.value);
    auto v = VocabFromHfDir(WriteTokenizerJson(c.name, j));
    ASSERT_FALSE(v.ok()) << c.name;
    EXPECT_EQ(v.status().code(), c.code) << c.name << ": " << v.status().ToString();
    EXPECT_NE(v.status().message().find(c.named), std::string::npos) << c.name << ": " << v.status().ToString();
  }
  {
    const std::string dir = ::testing::TempDir() + "/hf_not_json";
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/tokenizer.json") << "{\"model\": ";
    EXPECT_EQ(VocabFromHfDir(dir).status().code(), StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace slim
