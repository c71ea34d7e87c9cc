// The safetensors parser against the fixtures of scripts/make-malformed-safetensors.py: every
// file in tests/fixtures/malformed_safetensors/ is refused with the message expected.json names
// (by Open, or by ReadF32 for "read" files), naming the file; the valid seeds in
// tests/fixtures/safetensors_seed/ parse, and their fp32 conversion equals the values Python's
// struct module decodes (values.json).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/model/safetensors.h"

namespace slim {
namespace {

namespace fs = std::filesystem;
using safetensors::SafetensorsFile;
using safetensors::TensorInfo;

const fs::path kFixtures = fs::path(SLIM_SOURCE_DIR) / "tests" / "fixtures";

nlohmann::json LoadJson(const fs::path& p) {
  std::ifstream in(p);
  if (!in) {
    ADD_FAILURE() << "missing " << p << ": run scripts/make-malformed-safetensors.py";
    return nlohmann::json::object();
  }
  return nlohmann::json::parse(in);
}

std::set<std::string> FilesIn(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".safetensors") names.insert(e.path().filename().string());
  }
  return names;
}

std::vector<uint8_t> ReadBytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The first tensor whose ReadF32 fails, or OK.
Status ReadAll(const SafetensorsFile& f) {
  for (const TensorInfo& t : f.tensors()) {
    std::vector<float> out(t.n_elements);
    SLIM_RETURN_IF_ERROR(f.ReadF32(t, out.data()));
  }
  return OkStatus();
}

TEST(MalformedSafetensors, EveryFixtureHasAnExpectationAndViceVersa) {
  const nlohmann::json expected = LoadJson(kFixtures / "malformed_safetensors" / "expected.json");
  std::set<std::string> listed;
  for (const auto& [name, _] : expected.items()) listed.insert(name);
  EXPECT_EQ(FilesIn(kFixtures / "malformed_safetensors"), listed);
  EXPECT_GE(listed.size(), 60u);
}

TEST(MalformedSafetensors, EachIsRejectedWithItsMessage) {
  const nlohmann::json expected = LoadJson(kFixtures / "malformed_safetensors" / "expected.json");
  int parse = 0, read = 0;
  for (const auto& [name, want] : expected.items()) {
    SCOPED_TRACE(name);
    const std::string path = (kFixtures / "malformed_safetensors" / name).string();
    const std::string substring = want["error"].get<std::string>();
    auto file = SafetensorsFile::Open(path);
    Status status;
    if (want["stage"] == "parse") {
      ASSERT_FALSE(file.ok()) << "parsed, but should have failed with: " << substring;
      status = file.status();
      ++parse;
    } else {
      ASSERT_EQ(want["stage"], "read");
      ASSERT_TRUE(file.ok()) << file.status().ToString();
      status = ReadAll(**file);
      ASSERT_FALSE(status.ok()) << "read, but should have failed with: " << substring;
      ++read;
    }
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_NE(status.message().find(substring), std::string::npos)
        << "message: " << status.message() << "\nexpected to contain: " << substring;
    EXPECT_EQ(status.message().rfind(path + ": ", 0), 0u) << "message does not start with the file: " << status.message();
  }
  EXPECT_GT(parse, 50);
  EXPECT_GE(read, 3);
}

// The same bytes through FromBuffer (the fuzzer's entry point) fail the same way.
TEST(MalformedSafetensors, FromBufferAgreesWithOpen) {
  const nlohmann::json expected = LoadJson(kFixtures / "malformed_safetensors" / "expected.json");
  for (const auto& [name, want] : expected.items()) {
    if (want["stage"] != "parse") continue;
    const std::vector<uint8_t> bytes = ReadBytes(kFixtures / "malformed_safetensors" / name);
    auto file = SafetensorsFile::FromBuffer(bytes, name);
    ASSERT_FALSE(file.ok()) << name;
    EXPECT_NE(file.status().message().find(want["error"].get<std::string>()), std::string::npos)
        << name << ": " << file.status().message();
  }
}

TEST(SafetensorsSeeds, ParseAndConvertAsPythonDecodes) {
  const nlohmann::json values = LoadJson(kFixtures / "safetensors_seed" / "values.json");
  std::set<std::string> listed;
  for (const auto& [name, _] : values.items()) listed.insert(name);
  EXPECT_EQ(FilesIn(kFixtures / "safetensors_seed"), listed);
  ASSERT_GE(listed.size(), 4u);
  for (const auto& [name, want] : values.items()) {
    SCOPED_TRACE(name);
    auto file = SafetensorsFile::Open((kFixtures / "safetensors_seed" / name).string());
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    const SafetensorsFile& f = **file;
    ASSERT_EQ(f.tensors().size(), want["tensors"].size());
    std::map<std::string, std::string> metadata(f.metadata().begin(), f.metadata().end());
    EXPECT_EQ(metadata, want["metadata"].get<decltype(metadata)>());
    uint64_t prev_end = 0;
    for (const TensorInfo& t : f.tensors()) {
      SCOPED_TRACE(t.name);
      ASSERT_TRUE(want["tensors"].contains(t.name));
      const auto& w = want["tensors"][t.name];
      EXPECT_EQ(f.FindTensor(t.name), &t);
      EXPECT_EQ(safetensors::DTypeName(t.dtype), w["dtype"].get<std::string>());
      EXPECT_EQ(t.shape, w["shape"].get<std::vector<int64_t>>());
      EXPECT_EQ(t.begin, prev_end);  // tensors() is in data order
      prev_end = t.end;
      std::vector<float> out(t.n_elements);
      ASSERT_TRUE(f.ReadF32(t, out.data()).ok());
      EXPECT_EQ(out, w["values"].get<std::vector<float>>());
    }
  }
}

TEST(Safetensors, MissingFileIsNotFound) {
  auto file = SafetensorsFile::Open((kFixtures / "no-such.safetensors").string());
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), StatusCode::kNotFound);
  EXPECT_NE(file.status().message().find("no-such.safetensors"), std::string::npos);
}

}  // namespace
}  // namespace slim
