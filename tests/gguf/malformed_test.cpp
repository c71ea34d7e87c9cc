// Every file in tests/fixtures/malformed/ is rejected with the message its entry in expected.json
// names: "parse" files by GgufFile::Open, "config" files (which parse) by ConfigFromGguf ("load"
// files pass both; tests/engine/model_test.cpp checks that Model::Load refuses them). The
// fixtures come from scripts/make-malformed-fixtures.py; the seeds in gguf_seed/ must load.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/gguf/gguf_file.h"
#include "engine/gguf/quant.h"
#include "engine/model/model_config.h"

namespace slim {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(SLIM_SOURCE_DIR) / "tests" / "fixtures";

nlohmann::json LoadExpected() {
  std::ifstream in(kFixtures / "malformed" / "expected.json");
  if (!in) {
    ADD_FAILURE() << "missing tests/fixtures/malformed/expected.json: run scripts/make-malformed-fixtures.py";
    return nlohmann::json::object();
  }
  return nlohmann::json::parse(in);
}

std::set<std::string> GgufFilesIn(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".gguf") names.insert(e.path().filename().string());
  }
  return names;
}

TEST(Malformed, EveryFixtureHasAnExpectationAndViceVersa) {
  const nlohmann::json expected = LoadExpected();
  std::set<std::string> listed;
  for (const auto& [name, _] : expected.items()) listed.insert(name);
  EXPECT_EQ(GgufFilesIn(kFixtures / "malformed"), listed);
  EXPECT_GE(listed.size(), 50u);
}

TEST(Malformed, EachIsRejectedWithItsMessage) {
  const nlohmann::json expected = LoadExpected();
  int parse_errors = 0, config_errors = 0;
  for (const auto& [name, want] : expected.items()) {
    SCOPED_TRACE(name);
    const std::string path = (kFixtures / "malformed" / name).string();
    const std::string stage = want["stage"].get<std::string>();
    const std::string substring = want["error"].get<std::string>();
    auto file = gguf::GgufFile::Open(path);
    Status status;
    if (stage == "parse") {
      ASSERT_FALSE(file.ok()) << "parsed, but should have failed with: " << substring;
      status = file.status();
      ++parse_errors;
    } else if (stage == "load") {
      // Model::Load refuses these (tests/engine/model_test.cpp); they parse and configure.
      ASSERT_TRUE(file.ok()) << file.status().ToString();
      EXPECT_TRUE(ConfigFromGguf(**file).ok());
      continue;
    } else {
      ASSERT_EQ(stage, "config");
      ASSERT_TRUE(file.ok()) << file.status().ToString();
      auto config = ConfigFromGguf(**file);
      ASSERT_FALSE(config.ok()) << "config accepted, but should have failed with: " << substring;
      status = config.status();
      ++config_errors;
    }
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_NE(status.message().find(substring), std::string::npos)
        << "message: " << status.message() << "\nexpected to contain: " << substring;
    EXPECT_NE(status.message().find(path), std::string::npos)
        << "message does not name the file: " << status.message();
  }
  EXPECT_GT(parse_errors, 0);
  EXPECT_GT(config_errors, 0);
}

// The same bytes through FromBuffer (the fuzzer's entry point) fail the same way.
TEST(Malformed, FromBufferAgreesWithOpen) {
  const nlohmann::json expected = LoadExpected();
  for (const auto& [name, want] : expected.items()) {
    if (want["stage"] != "parse") continue;
    std::ifstream in(kFixtures / "malformed" / name, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto file = gguf::GgufFile::FromBuffer(bytes, name);
    ASSERT_FALSE(file.ok()) << name;
    EXPECT_NE(file.status().message().find(want["error"].get<std::string>()), std::string::npos)
        << name << ": " << file.status().message();
  }
}

// The fuzzer's seeds are valid: they parse, and every supported tensor dequantizes.
TEST(Seeds, ParseAndDequantize) {
  const std::set<std::string> seeds = GgufFilesIn(kFixtures / "gguf_seed");
  ASSERT_GE(seeds.size(), 2u);
  for (const std::string& name : seeds) {
    SCOPED_TRACE(name);
    auto file = gguf::GgufFile::Open((kFixtures / "gguf_seed" / name).string());
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    for (const gguf::TensorInfo& t : (*file)->tensors()) {
      if (!gguf::CanDequantize(t.type)) continue;
      std::vector<float> out(t.n_elements);
      ASSERT_TRUE(gguf::DequantizeRow(t.type, t.data, out.data(), static_cast<int64_t>(t.n_elements)).ok())
          << t.name;
    }
    if ((*file)->Find("general.architecture") != nullptr) {
      auto config = ConfigFromGguf(**file);
      ASSERT_TRUE(config.ok()) << config.status().ToString();
    }
  }
}

}  // namespace
}  // namespace slim
