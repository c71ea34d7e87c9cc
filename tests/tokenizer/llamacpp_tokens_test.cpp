// The real default model's tokenizer against llama.cpp: token ids of every case in
// tests/fixtures/llamacpp/tokens.json (made by scripts/make-fixtures.py) must match exactly.
// Also checks the vocabulary read from GGUF and decoding round trips on the same strings.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/gguf/gguf_file.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/vocab.h"

namespace slim {
namespace {

constexpr const char* kFixture = SLIM_SOURCE_DIR "/tests/fixtures/llamacpp/tokens.json";

std::string IdsToString(const std::vector<int32_t>& ids) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < ids.size(); ++i) os << (i ? ", " : "") << ids[i];
  os << "]";
  return os.str();
}

// The model is loaded once for the whole suite; a missing model fails every test that needs it.
class LlamaCppTokensTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto file = gguf::GgufFile::Open(SLIM_DEFAULT_MODEL);
    if (!file.ok()) {
      *load_error_ = "cannot open the default model (run scripts/fetch-model.sh): " + file.status().ToString();
      return;
    }
    auto vocab = VocabFromGguf(**file);
    if (!vocab.ok()) {
      *load_error_ = vocab.status().ToString();
      return;
    }
    auto tok = Tokenizer::Create(*vocab);
    if (!tok.ok()) {
      *load_error_ = tok.status().ToString();
      return;
    }
    tok_ = std::move(tok).value().release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(tok_, nullptr) << *load_error_; }

  static Tokenizer* tok_;
  static std::string* load_error_;
};

Tokenizer* LlamaCppTokensTest::tok_ = nullptr;
std::string* LlamaCppTokensTest::load_error_ = new std::string();

TEST_F(LlamaCppTokensTest, VocabularyFromGguf) {
  const VocabData& v = tok_->vocab();
  EXPECT_EQ(v.model, "gpt2");
  EXPECT_EQ(v.pre, "smollm");
  EXPECT_EQ(v.tokens.size(), 49152u);
  EXPECT_EQ(v.token_types.size(), 49152u);
  EXPECT_EQ(v.merges.size(), 48900u);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_EQ(v.unk_id, 0);
  EXPECT_EQ(v.pad_id, 2);
  EXPECT_EQ(v.eot_id, tok_->FindToken("<|im_end|>"));  // no eot key: found by its text
  EXPECT_FALSE(v.add_bos);
  EXPECT_FALSE(v.add_eos);
  EXPECT_TRUE(tok_->IsControl(tok_->FindToken("<|im_start|>")));
  EXPECT_TRUE(tok_->IsEndOfGeneration(tok_->FindToken("<|im_end|>")));
  EXPECT_TRUE(tok_->IsEndOfGeneration(tok_->FindToken("<|endoftext|>")));
  EXPECT_FALSE(tok_->IsEndOfGeneration(tok_->FindToken("<|im_start|>")));

  auto tmpl = ChatTemplate::Create(v.chat_template);
  ASSERT_TRUE(tmpl.ok()) << tmpl.status().ToString();
  EXPECT_EQ(tmpl->kind(), ChatTemplateKind::kChatML);
  EXPECT_EQ(tmpl->default_system(), "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
}

TEST_F(LlamaCppTokensTest, MatchesLlamaCppFixture) {
  std::ifstream in(kFixture);
  ASSERT_TRUE(in.good()) << kFixture << " is missing: run scripts/make-fixtures.py to generate the llama.cpp "
                         << "reference token ids";
  nlohmann::json fixture;
  try {
    fixture = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    FAIL() << kFixture << " is not valid JSON: " << e.what();
  }
  ASSERT_TRUE(fixture.contains("cases") && fixture["cases"].is_array()) << kFixture << " has no \"cases\" array";
  const auto& cases = fixture["cases"];
  ASSERT_GE(cases.size(), 30u) << "the fixture should hold at least 30 strings";

  const VocabData& v = tok_->vocab();
  size_t mismatches = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string text = c.at("text").get<std::string>();
    const bool add_bos = c.value("add_bos", false);
    const bool parse_special = c.value("parse_special", false);
    const std::vector<int32_t> want = c.at("ids").get<std::vector<int32_t>>();

    // The fixture's add_bos is llama.cpp's add_special: BOS (EOS) only where the vocabulary asks
    // for it (tokenizer.ggml.add_bos_token / add_eos_token).
    auto got = tok_->Encode(text, {.add_bos = add_bos && v.add_bos, .parse_special = parse_special});
    ASSERT_TRUE(got.ok()) << "case " << i << ": " << got.status().ToString();
    std::vector<int32_t> ids = std::move(got).value();
    if (add_bos && v.add_eos) ids.push_back(v.eos_id);
    if (ids != want) {
      ++mismatches;
      ADD_FAILURE() << "case " << i << " (add_bos=" << add_bos << ", parse_special=" << parse_special
                    << ")\n  text:     " << nlohmann::json(text).dump() << "\n  llama.cpp: " << IdsToString(want)
                    << "\n  ours:      " << IdsToString(ids);
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << cases.size() << " cases";
}

TEST_F(LlamaCppTokensTest, DecodeRoundTripsFixtureStrings) {
  std::ifstream in(kFixture);
  ASSERT_TRUE(in.good()) << kFixture << " is missing: run scripts/make-fixtures.py";
  const nlohmann::json fixture = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(fixture.is_discarded()) << kFixture << " is not valid JSON";
  for (const auto& c : fixture.at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    const bool parse_special = c.value("parse_special", false);
    auto ids = tok_->Encode(text, {.add_bos = false, .parse_special = parse_special});
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    // Special tokens reproduce their text only when rendered; without parse_special there are none.
    EXPECT_EQ(tok_->Decode(*ids, /*render_special=*/true), text);
    if (!parse_special) {
      EXPECT_EQ(tok_->Decode(*ids), text) << nlohmann::json(text).dump();
    }

    // Streaming the same ids yields the same text.
    StreamDecoder dec(*tok_, /*render_special=*/true);
    std::string streamed;
    for (const int32_t id : *ids) streamed += dec.Push(id);
    streamed += dec.Flush();
    EXPECT_EQ(streamed, text);
  }
}

TEST_F(LlamaCppTokensTest, ChatPromptTokenizesWithControlTokens) {
  auto tmpl = ChatTemplate::Create(tok_->vocab().chat_template);
  ASSERT_TRUE(tmpl.ok());
  auto prompt = tmpl->Apply({{"user", "Hi"}});
  ASSERT_TRUE(prompt.ok());
  auto ids = tok_->Encode(*prompt, {.add_bos = false, .parse_special = true});
  ASSERT_TRUE(ids.ok());
  const int32_t im_start = tok_->FindToken("<|im_start|>");
  const int32_t im_end = tok_->FindToken("<|im_end|>");
  EXPECT_EQ(std::count(ids->begin(), ids->end(), im_start), 3);  // system, user, assistant
  EXPECT_EQ(std::count(ids->begin(), ids->end(), im_end), 2);
  EXPECT_EQ(ids->front(), im_start);
  EXPECT_EQ(tok_->Decode(*ids, /*render_special=*/true), *prompt);
}

}  // namespace
}  // namespace slim
