// A real model with Q2_K, Q3_K, IQ4_XS and IQ4_NL tensors (the default model re-quantized by
// scripts/make-kquant-model.py, written with the gguf package) loads and runs on the CPU
// backend, which dequantizes these types to fp32 at load; its logits match a float64 numpy
// forward pass over the package's dequantization of the same file
// (tests/fixtures/kquant/reference.json), through prefill and through a decode step.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/gguf/gguf_file.h"
#include "engine/gguf/quant.h"
#include "tests/engine/llamacpp_check.h"

namespace slim {
namespace {

using testing::LoadFixtureJson;
using testing::ReadF32File;

std::string FixtureDir() { return std::string(SLIM_SOURCE_DIR) + "/tests/fixtures/kquant"; }

std::unique_ptr<Engine>& SharedEngine() {
  static std::unique_ptr<Engine> engine =
      testing::MakeModelEngine(SLIM_KQUANT_MODEL, "f32", "scripts/make-kquant-model.py");
  return engine;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

int Argmax(const std::vector<float>& v) {
  int best = 0;
  for (size_t i = 1; i < v.size(); ++i) {
    if (v[i] > v[static_cast<size_t>(best)]) best = static_cast<int>(i);
  }
  return best;
}

// The file is the one the fixture was made from, and holds every type it is meant to test.
TEST(KQuantModel, FileHoldsTheNewTypes) {
  const nlohmann::json ref = LoadFixtureJson(FixtureDir() + "/reference.json");
  ASSERT_TRUE(ref.contains("tensor_types"));
  auto f = gguf::GgufFile::Open(SLIM_KQUANT_MODEL);
  ASSERT_TRUE(f.ok()) << f.status().ToString() << " (run scripts/make-kquant-model.py)";
  std::map<std::string, int> counts;
  for (const gguf::TensorInfo& t : (*f)->tensors()) ++counts[gguf::TensorTypeName(t.type)];
  for (const auto& [name, n] : ref["tensor_types"].items()) EXPECT_EQ(counts[name], n.get<int>()) << name;
  for (const char* t : {"Q2_K", "Q3_K", "IQ4_XS", "IQ4_NL"}) EXPECT_GE(counts[t], 10) << t;
}

TEST(KQuantModel, LogitsMatchNumpyForward) {
  Engine* e = SharedEngine().get();
  ASSERT_TRUE(e);
  const nlohmann::json ref = LoadFixtureJson(FixtureDir() + "/reference.json");
  ASSERT_GE(ref["cases"].size(), 2u);
  const int vocab = e->config().vocab_size;
  ASSERT_EQ(ref["n_vocab"].get<int>(), vocab);
  for (const auto& c : ref["cases"]) {
    const std::string name = c["name"];
    const std::vector<int32_t> ids = c["prompt_ids"].get<std::vector<int32_t>>();
    const std::vector<float> want =
        ReadF32File(FixtureDir() + "/" + c["logits_file"].get<std::string>(), static_cast<size_t>(vocab));
    auto r = e->Prefill(1, ids);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(e->Release(1).ok());
    const double max_abs = MaxAbsDiff(r->logits, want);
    std::printf("[kquant] %s %zu tokens: argmax ours %d numpy %d; max |ours - numpy float64| %.2e\n", name.c_str(),
                ids.size(), Argmax(r->logits), c["argmax"].get<int>(), max_abs);
    EXPECT_EQ(Argmax(r->logits), c["argmax"].get<int>()) << name;
    EXPECT_LT(max_abs, testing::kNumpyMaxAbsTol) << name;
  }
}

// The last prompt token fed as a decode step (rows of one: the quantized-GEMV path for the
// Q4_1 tensors, fp32 for the dequantized ones) gives the prefill's logits.
TEST(KQuantModel, DecodeStepMatchesNumpyForward) {
  Engine* e = SharedEngine().get();
  ASSERT_TRUE(e);
  const nlohmann::json ref = LoadFixtureJson(FixtureDir() + "/reference.json");
  ASSERT_GE(ref["cases"].size(), 1u);
  const auto& c = ref["cases"][0];
  std::vector<int32_t> ids = c["prompt_ids"].get<std::vector<int32_t>>();
  const std::vector<float> want = ReadF32File(FixtureDir() + "/" + c["logits_file"].get<std::string>(),
                                              static_cast<size_t>(e->config().vocab_size));
  const int32_t last = ids.back();
  ids.pop_back();
  ASSERT_TRUE(e->Prefill(1, ids).ok());
  std::vector<float> logits;
  DecodeItem it{1, last};
  ASSERT_TRUE(e->Decode({&it, 1}, &logits).ok());
  ASSERT_TRUE(e->Release(1).ok());
  ASSERT_EQ(logits.size(), want.size());
  EXPECT_EQ(Argmax(logits), c["argmax"].get<int>());
  EXPECT_LT(MaxAbsDiff(logits, want), testing::kNumpyMaxAbsTol);
}

}  // namespace
}  // namespace slim
