// Every vocab-only GGUF llama.cpp ships (models/llamacpp-vocab/, fetched from the llama-cpp-python
// sdist by scripts/fetch-llamacpp-vocabs.sh) against llama.cpp's own expected token ids: for each
// file with a .inp/.out pair, every test string encodes (no BOS, no special-token parsing, as
// llama.cpp's tests/test-tokenizer-0 does) to exactly the ids in the .out file, and those ids
// decode back to the string. Files of model types we do not implement must be refused with a
// message naming the model type.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/gguf/gguf_file.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/vocab.h"

namespace slim {
namespace {

const std::string kDir = SLIM_SOURCE_DIR "/models/llamacpp-vocab";

// The files of llama-cpp-python 0.3.36's sdist and what we expect of each: "" = supported (all
// ids equal where a .inp/.out pair exists), otherwise the model type whose refusal we expect.
const std::map<std::string, std::string>& Expected() {
  static const std::map<std::string, std::string> m = {
      {"aquila", ""},        {"baichuan", ""},     {"bert-bge", "bert"},     {"command-r", ""},
      {"deepseek-coder", ""}, {"deepseek-llm", ""}, {"falcon", ""},          {"gemma-4", ""},
      {"gpt-2", ""},         {"gpt-neox", ""},     {"llama-bpe", ""},        {"llama-spm", ""},
      {"mpt", ""},           {"nomic-bert-moe", "t5"}, {"phi-3", ""},        {"qwen2", ""},
      {"qwen35", ""},        {"refact", ""},       {"starcoder", ""},
  };
  return m;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// llama.cpp's read_tests: the .inp holds the strings separated by "\n__ggml_vocab_test__\n", the
// .out one line of space-separated ids per string.
struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Case> ReadCases(const std::string& inp_path, const std::string& out_path, std::string* error) {
  const std::string raw = ReadFile(inp_path);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::ifstream out(out_path);
  std::vector<std::vector<int32_t>> outputs;
  for (std::string line; std::getline(out, line);) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    for (long v; ls >> v;) ids.push_back(static_cast<int32_t>(v));
    outputs.push_back(std::move(ids));
  }
  if (inputs.size() != outputs.size()) {
    *error = inp_path + " has " + std::to_string(inputs.size()) + " strings but " + out_path + " has " +
             std::to_string(outputs.size()) + " lines";
    return {};
  }
  std::vector<Case> cases;
  for (size_t i = 0; i < inputs.size(); ++i) cases.push_back({inputs[i], outputs[i]});
  return cases;
}

std::string Ids(const std::vector<int32_t>& ids) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < ids.size(); ++i) os << (i ? " " : "") << ids[i];
  os << "]";
  return os.str();
}

class LlamaCppVocabTest : public ::testing::TestWithParam<std::string> {};

TEST(LlamaCppVocabFolder, HoldsExactlyTheExpectedFiles) {
  ASSERT_TRUE(std::filesystem::is_directory(kDir)) << kDir << " is missing: run scripts/fetch-llamacpp-vocabs.sh";
  std::set<std::string> found;
  for (const auto& e : std::filesystem::directory_iterator(kDir)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("ggml-vocab-") && name.ends_with(".gguf")) {
      found.insert(name.substr(11, name.size() - 11 - 5));
    }
  }
  std::set<std::string> want;
  for (const auto& [name, refusal] : Expected()) want.insert(name);
  EXPECT_EQ(found, want);
}

TEST_P(LlamaCppVocabTest, MatchesLlamaCppOrIsRefusedByName) {
  const std::string base = kDir + "/ggml-vocab-" + GetParam() + ".gguf";
  const std::string& refusal = Expected().at(GetParam());
  auto file = gguf::GgufFile::Open(base);
  ASSERT_TRUE(file.ok()) << file.status().ToString() << " (run scripts/fetch-llamacpp-vocabs.sh)";
  auto model = (*file)->GetString("tokenizer.ggml.model");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  StatusOr<std::unique_ptr<Tokenizer>> tok = [&]() -> StatusOr<std::unique_ptr<Tokenizer>> {
    SLIM_ASSIGN_OR_RETURN(VocabData v, VocabFromGguf(**file));
    return Tokenizer::Create(std::move(v));
  }();
  if (!refusal.empty()) {
    EXPECT_EQ(*model, refusal);
    ASSERT_FALSE(tok.ok()) << GetParam() << " should be refused";
    EXPECT_EQ(tok.status().code(), StatusCode::kUnimplemented);
    EXPECT_NE(tok.status().message().find("'" + refusal + "'"), std::string::npos) << tok.status().ToString();
    return;
  }
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  if (!std::filesystem::exists(base + ".inp")) {
    // llama.cpp ships no expected ids for this vocabulary: it must load and round-trip text.
    for (const std::string text : {"Hello world", "x = 1234 + 5;\n\tdone"}) {
      auto ids = (*tok)->Encode(text, EncodeOptions{});
      ASSERT_TRUE(ids.ok()) << ids.status().ToString();
      EXPECT_FALSE(ids->empty());
      EXPECT_EQ((*tok)->Decode(*ids), ((*tok)->vocab().add_space_prefix ? " " : "") + text) << GetParam();
    }
    return;
  }
  std::string error;
  const std::vector<Case> cases = ReadCases(base + ".inp", base + ".out", &error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_GE(cases.size(), 20u);
  size_t mismatches = 0;
  for (const Case& c : cases) {
    auto ids = (*tok)->Encode(c.text, EncodeOptions{});
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    // The cheap length bound the engine checks before encoding holds.
    EXPECT_GE(ids->size() * (*tok)->max_input_bytes_per_token(), (*tok)->CoveredBytes(c.text)) << GetParam();
    if (*ids != c.ids) {
      ++mismatches;
      ADD_FAILURE() << GetParam() << ": text " << ::testing::PrintToString(c.text) << "\n  llama.cpp: " << Ids(c.ids)
                    << "\n  ours:      " << Ids(*ids);
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << cases.size() << " strings";

  // Decoding gives the text back (after the space a SentencePiece vocabulary prefixes), whole
  // and streamed token by token.
  const std::string prefix = (*tok)->vocab().add_space_prefix ? " " : "";
  for (const Case& c : cases) {
    if (c.text.empty()) continue;
    EXPECT_EQ((*tok)->Decode(c.ids), prefix + c.text) << GetParam() << ": " << ::testing::PrintToString(c.text);
    StreamDecoder dec(**tok);
    std::string streamed;
    for (const int32_t id : c.ids) streamed += dec.Push(id);
    streamed += dec.Flush();
    EXPECT_EQ(streamed, prefix + c.text) << GetParam();
  }
}

std::vector<std::string> Names() {
  std::vector<std::string> names;
  for (const auto& [name, refusal] : Expected()) names.push_back(name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(AllVocabs, LlamaCppVocabTest, ::testing::ValuesIn(Names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace slim
