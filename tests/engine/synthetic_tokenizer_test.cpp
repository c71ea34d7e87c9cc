// Synthetic weights with a real vocabulary (EngineOptions::tokenizer): the engine tokenizes as
// the vocabulary's own model does, and a vocabulary whose size differs from the model's, or one
// given for a model that has its own, is refused naming both.
#include <gtest/gtest.h>

#include "engine/engine.h"

namespace slim {
namespace {

EngineOptions Options(const std::string& model, const std::string& tokenizer) {
  EngineOptions o;
  o.model = model;
  o.tokenizer = tokenizer;
  o.backend.threads = 1;
  o.kv_tokens = 256;
  return o;
}

TEST(SyntheticTokenizer, SyntheticShapeTokenizesLikeTheVocabularysModel) {
  auto real = Engine::Create(Options(SLIM_DEFAULT_MODEL, ""));
  ASSERT_TRUE(real.ok()) << real.status().ToString();
  auto synth = Engine::Create(Options("synthetic:smollm2-135m", SLIM_DEFAULT_MODEL));
  ASSERT_TRUE(synth.ok()) << synth.status().ToString();
  ASSERT_NE((*synth)->tokenizer(), nullptr);
  for (const std::string text : {"Hello world", "caf\xC3\xA9 123 <|im_start|>", "  spaces\n\nand lines"}) {
    EXPECT_EQ(*(*synth)->Tokenize(text, false), *(*real)->Tokenize(text, false)) << text;
  }
  auto none = Engine::Create(Options("synthetic:smollm2-135m", ""));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ((*none)->tokenizer(), nullptr);
}

TEST(SyntheticTokenizer, MismatchedOrRedundantVocabulariesAreRefused) {
  auto tiny = Engine::Create(Options("synthetic:tiny", SLIM_DEFAULT_MODEL));
  ASSERT_FALSE(tiny.ok());
  EXPECT_EQ(tiny.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(tiny.status().message().find("the vocabulary has 49152 tokens but synthetic:tiny has 300"),
            std::string::npos)
      << tiny.status().ToString();
  auto own = Engine::Create(Options(SLIM_DEFAULT_MODEL, SLIM_DEFAULT_MODEL));
  ASSERT_FALSE(own.ok());
  EXPECT_NE(own.status().message().find("has its own vocabulary"), std::string::npos) << own.status().ToString();
  auto missing = Engine::Create(Options("synthetic:tiny", "/nonexistent/vocab.gguf"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/vocab.gguf"), std::string::npos)
      << missing.status().ToString();
}

}  // namespace
}  // namespace slim
