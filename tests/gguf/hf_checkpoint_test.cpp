// Hugging Face checkpoints that must be refused, each by the key or tensor at fault and the
// file: config.json variants of the fixtures of scripts/make-hf-fixtures.py (ConfigFromHfJson),
// and checkpoint directories with missing, extra, mis-shaped or mis-indexed tensors
// (OpenHfWeights). The fixtures themselves load (tests/engine/hf_model_test.cpp runs them).
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "engine/model/hf_config.h"
#include "engine/model/weight_source.h"

namespace slim {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kHf = fs::path(SLIM_SOURCE_DIR) / "tests" / "fixtures" / "hf";

json FixtureConfig(const std::string& name) {
  std::ifstream in(kHf / name / "config.json");
  EXPECT_TRUE(in) << "missing fixture " << name << ": run scripts/make-hf-fixtures.py";
  return in ? json::parse(in) : json::object();
}

void ExpectError(const Status& s, StatusCode code, const std::string& substring, const std::string& file) {
  EXPECT_EQ(s.code(), code) << s.ToString();
  EXPECT_NE(s.message().find(substring), std::string::npos) << "message: " << s.message() << "\nexpected: " << substring;
  EXPECT_NE(s.message().find(file), std::string::npos) << "message does not name " << file << ": " << s.message();
}

struct ConfigCase {
  const char* fixture;
  std::function<void(json&)> edit;
  const char* error;
};

TEST(HfConfig, FixturesParse) {
  for (const char* name : {"llama3_tied", "llama2_untied", "qwen2_tied", "mistral_window"}) {
    auto c = ConfigFromHfJson(FixtureConfig(name).dump(), name);
    EXPECT_TRUE(c.ok()) << name << ": " << c.status().ToString();
  }
}

TEST(HfConfig, RefusesByKeyName) {
  const ConfigCase cases[] = {
      {"llama2_untied", [](json& c) { c.erase("hidden_size"); }, "'hidden_size' is missing (required)"},
      {"llama2_untied", [](json& c) { c["vocab_size"] = nullptr; }, "'vocab_size' is null, but required"},
      {"llama2_untied", [](json& c) { c.erase("model_type"); }, "'model_type' is missing"},
      {"llama2_untied", [](json& c) { c["model_type"] = "gpt2"; },
       "'model_type' = 'gpt2' is not supported (supported: llama, mistral, qwen2)"},
      {"llama2_untied", [](json& c) { c["architectures"] = {"LlamaForSequenceClassification"}; },
       "'architectures' = [\"LlamaForSequenceClassification\"] is not supported"},
      {"llama2_untied", [](json& c) { c["hidden_size"] = "64"; }, "'hidden_size' is a string, expected an integer"},
      {"llama2_untied", [](json& c) { c["num_hidden_layers"] = 2.5; }, "'num_hidden_layers' is a number, expected an integer"},
      {"llama2_untied", [](json& c) { c["intermediate_size"] = 1LL << 40; }, "'intermediate_size' = 1099511627776 is out of range"},
      {"llama2_untied", [](json& c) { c["num_key_value_heads"] = 3; },
       "'num_key_value_heads' = 3 does not divide 'num_attention_heads' = 4"},
      {"llama2_untied", [](json& c) { c["rms_norm_eps"] = -1; }, "'rms_norm_eps' = -1 is not in (0, 1)"},
      {"llama2_untied", [](json& c) { c["hidden_act"] = "gelu"; }, "'hidden_act' = \"gelu\" is not supported"},
      {"llama2_untied", [](json& c) { c["mlp_bias"] = true; }, "'mlp_bias' = true is not supported"},
      {"llama2_untied", [](json& c) { c["attention_bias"] = true; }, "'attention_bias' = true is not supported"},
      {"llama2_untied", [](json& c) { c["tie_word_embeddings"] = 1; }, "'tie_word_embeddings' is an integer, expected true or false"},
      {"llama2_untied", [](json& c) { c["rope_interleaved"] = true; }, "'rope_interleaved' = true is not supported"},
      {"llama2_untied", [](json& c) { c["foo_scale"] = 2; }, "'foo_scale' is not a llama config key this engine knows"},
      {"llama2_untied", [](json& c) { c["sliding_window"] = 16; }, "'sliding_window' is not a llama config key"},
      {"llama2_untied", [](json& c) { c["quantization_config"] = {{"quant_method", "gptq"}}; },
       "'quantization_config' is present: quantized safetensors checkpoints are not supported"},
      {"llama2_untied", [](json& c) { c["rope_parameters"]["rope_type"] = "yarn"; },
       "'rope_parameters.rope_type' = 'yarn' is not supported (supported: default, linear, llama3)"},
      {"llama2_untied", [](json& c) { c["rope_parameters"] = 10000; }, "'rope_parameters' is an integer, expected an object"},
      {"llama2_untied", [](json& c) { c["rope_theta"] = 10000; }, "'rope_theta' is given together with 'rope_parameters'"},
      {"llama2_untied",
       [](json& c) {
         c.erase("rope_parameters");
         c["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
       },
       "'rope_scaling.type' = 'dynamic' is not supported"},
      {"llama2_untied",
       [](json& c) {
         c.erase("rope_parameters");
         c["rope_scaling"] = {{"rope_type", "linear"}};
       },
       "'rope_scaling.factor' is missing (required)"},
      {"llama2_untied",
       [](json& c) {
         c.erase("rope_parameters");
         c["rope_scaling"] = {{"rope_type", "linear"}, {"type", "llama3"}, {"factor", 2.0}};
       },
       "'rope_scaling.type' = 'llama3' contradicts 'rope_type' = 'linear'"},
      {"llama3_tied", [](json& c) { c["rope_parameters"].erase("low_freq_factor"); },
       "'rope_parameters.low_freq_factor' is missing (required)"},
      {"llama3_tied", [](json& c) { c["rope_parameters"]["attention_factor"] = 1.2; },
       "'rope_parameters.attention_factor' is not a llama3 RoPE config key"},
      {"llama3_tied", [](json& c) { c["rope_parameters"]["high_freq_factor"] = 0.5; },
       "'rope_parameters.high_freq_factor' = 0.5 must be greater than 'rope_parameters.low_freq_factor' = 1"},
      {"qwen2_tied", [](json& c) { c["layer_types"] = {"full_attention", "chunked_attention", "full_attention"}; },
       "'layer_types[1]' = \"chunked_attention\" is not supported"},
      {"qwen2_tied", [](json& c) { c["layer_types"] = {"full_attention"}; },
       "'layer_types' must be an array of 'num_hidden_layers' = 3 strings"},
      {"qwen2_tied", [](json& c) { c["use_sliding_window"] = "yes"; }, "'use_sliding_window' is a string, expected true or false"},
      {"qwen2_tied", [](json& c) { c["attention_bias"] = false; }, "'attention_bias' is not a qwen2 config key"},
      {"mistral_window", [](json& c) { c["sliding_window"] = 0; }, "'sliding_window' = 0 must be positive"},
      {"mistral_window", [](json& c) { c["head_dim"] = 33; }, "'head_dim' = 33 must be even"},
  };
  for (const ConfigCase& c : cases) {
    SCOPED_TRACE(c.error);
    json j = FixtureConfig(c.fixture);
    c.edit(j);
    const std::string path = std::string("dir/") + c.fixture + "/config.json";
    auto config = ConfigFromHfJson(j.dump(), path);
    ASSERT_FALSE(config.ok()) << "accepted, but should fail with: " << c.error;
    ExpectError(config.status(), StatusCode::kInvalidArgument, c.error, path);
  }
  auto bad = ConfigFromHfJson("{\"model_type\": ", "x/config.json");
  ASSERT_FALSE(bad.ok());
  ExpectError(bad.status(), StatusCode::kInvalidArgument, "not valid JSON", "x/config.json");
}

// The sliding window as transformers' configs apply it (ModelConfig::sliding_window; Engine
// refuses it where it is shorter than the context).
TEST(HfConfig, SlidingWindowAsTransformersAppliesIt) {
  auto window = [](const char* fixture, const std::function<void(json&)>& edit) {
    json j = FixtureConfig(fixture);
    edit(j);
    auto c = ConfigFromHfJson(j.dump(), "config.json");
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? c->sliding_window : -1;
  };
  EXPECT_EQ(window("mistral_window", [](json&) {}), 4096);
  EXPECT_EQ(window("mistral_window", [](json& c) { c["sliding_window"] = nullptr; }), 0);
  // qwen2: use_sliding_window false disables it; with it, v5's layer_types decide, else layers
  // from max_window_layers on.
  EXPECT_EQ(window("qwen2_tied", [](json& c) { c["sliding_window"] = 32; }), 0);
  EXPECT_EQ(window("qwen2_tied", [](json& c) { c["sliding_window"] = 32; c["use_sliding_window"] = true; }), 0);
  EXPECT_EQ(window("qwen2_tied",
                   [](json& c) {
                     c["sliding_window"] = 32;
                     c["use_sliding_window"] = true;
                     c["layer_types"][2] = "sliding_attention";
                   }),
            32);
  EXPECT_EQ(window("qwen2_tied",
                   [](json& c) {
                     c["sliding_window"] = 32;
                     c["use_sliding_window"] = true;
                     c.erase("layer_types");
                   }),
            32);  // max_window_layers 2 < 3 layers
  EXPECT_EQ(window("qwen2_tied",
                   [](json& c) {
                     c["sliding_window"] = 32;
                     c["use_sliding_window"] = true;
                     c["max_window_layers"] = 3;
                     c.erase("layer_types");
                   }),
            0);
}

// A scratch copy of a fixture directory, removed at the end of the test.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& fixture) {
    static int n = 0;
    dir_ = fs::temp_directory_path() / ("hf_checkpoint_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const auto& f : fs::directory_iterator(kHf / fixture)) fs::copy_file(f.path(), dir_ / f.path().filename());
  }
  ~ScratchDir() { fs::remove_all(dir_); }
  const fs::path& path() const { return dir_; }
  std::string str() const { return dir_.string(); }
  json Read(const std::string& file) const {
    std::ifstream in(dir_ / file);
    return json::parse(in);
  }
  void Write(const std::string& file, const json& j) const { std::ofstream(dir_ / file) << j.dump(1); }
  void EditConfig(const std::function<void(json&)>& edit) const {
    json j = Read("config.json");
    edit(j);
    Write("config.json", j);
  }

 private:
  fs::path dir_;
};

// A safetensors file of F32 tensors (zeros) of the given shapes.
void WriteSafetensors(const fs::path& path, const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors) {
  json header = json::object();
  uint64_t at = 0;
  for (const auto& [name, shape] : tensors) {
    uint64_t n = 4;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {at, at + n}}};
    at += n;
  }
  const std::string h = header.dump();
  const uint64_t len = h.size();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << h << std::string(at, '\0');
}

Status Open(const ScratchDir& d) { return OpenHfWeights(d.str()).status(); }

TEST(HfCheckpoint, FixturesOpen) {
  for (const char* name : {"llama3_tied", "llama2_untied", "qwen2_tied", "mistral_window"}) {
    auto w = OpenWeights((kHf / name).string());
    ASSERT_TRUE(w.ok()) << name << ": " << w.status().ToString();
    EXPECT_EQ((*w)->hf_checkpoint_dir(), (kHf / name).string());
    EXPECT_TRUE((*w)->Has("blk.1.attn_q.weight"));
    EXPECT_FALSE((*w)->Has("model.layers.1.self_attn.q_proj.weight"));  // only the names Model::Load reads
  }
}

TEST(HfCheckpoint, DirectoryErrors) {
  {
    ScratchDir d("llama2_untied");
    fs::remove(d.path() / "config.json");
    ExpectError(Open(d), StatusCode::kNotFound, "config.json: cannot open", d.str());
  }
  {
    ScratchDir d("llama2_untied");
    fs::remove(d.path() / "model.safetensors");
    ExpectError(Open(d), StatusCode::kNotFound, "no model.safetensors or model.safetensors.index.json", d.str());
  }
  {
    ScratchDir d("qwen2_tied");
    fs::copy_file(d.path() / "model-00001-of-00004.safetensors", d.path() / "model.safetensors");
    ExpectError(Open(d), StatusCode::kInvalidArgument, "holds both model.safetensors and model.safetensors.index.json", d.str());
  }
  {
    ScratchDir d("llama2_untied");
    fs::resize_file(d.path() / "model.safetensors", fs::file_size(d.path() / "model.safetensors") - 4);
    ExpectError(Open(d), StatusCode::kInvalidArgument, "runs past the end of the data section",
                (d.path() / "model.safetensors").string());
  }
}

TEST(HfCheckpoint, TensorErrorsNameTheTensorAndFile) {
  const std::string single = "model.safetensors";
  {
    ScratchDir d("llama2_untied");
    d.EditConfig([](json& c) { c["intermediate_size"] = 96; });
    ExpectError(Open(d), StatusCode::kInvalidArgument,
                "tensor 'model.layers.0.mlp.down_proj.weight' has shape [64, 128], but config.json implies [64, 96]",
                (d.path() / single).string());
  }
  {
    ScratchDir d("llama2_untied");
    d.EditConfig([](json& c) { c["num_hidden_layers"] = 3; });
    ExpectError(Open(d), StatusCode::kInvalidArgument, "missing tensor 'model.layers.2.input_layernorm.weight' (in none of model.safetensors)",
                d.str());
  }
  {
    ScratchDir d("llama2_untied");
    d.EditConfig([](json& c) { c["num_hidden_layers"] = 1; });
    ExpectError(Open(d), StatusCode::kUnimplemented, "tensor 'model.layers.1.", (d.path() / single).string());
  }
  {
    ScratchDir d("llama2_untied");
    d.EditConfig([](json& c) { c["tie_word_embeddings"] = true; });
    ExpectError(Open(d), StatusCode::kInvalidArgument, "tensor 'lm_head.weight' is present, but config.json ties",
                (d.path() / single).string());
  }
  {
    ScratchDir d("llama3_tied");
    d.EditConfig([](json& c) { c["tie_word_embeddings"] = false; });
    ExpectError(Open(d), StatusCode::kInvalidArgument, "missing tensor 'lm_head.weight'", d.str());
  }
  {
    // Qwen2's QKV biases are not part of a llama layer.
    ScratchDir d("qwen2_tied");
    d.EditConfig([](json& c) {
      c["model_type"] = "llama";
      c["architectures"] = {"LlamaForCausalLM"};
      for (const char* k : {"use_sliding_window", "sliding_window", "max_window_layers", "layer_types"}) c.erase(k);
    });
    ExpectError(Open(d), StatusCode::kUnimplemented, "proj.bias' is not used by this engine's llama layer loop", d.str());
  }
  {
    // A Qwen3-style q_norm in an extra shard, listed in the index.
    ScratchDir d("qwen2_tied");
    WriteSafetensors(d.path() / "extra.safetensors", {{"model.layers.0.self_attn.q_norm.weight", {16}}});
    json index = d.Read("model.safetensors.index.json");
    index["weight_map"]["model.layers.0.self_attn.q_norm.weight"] = "extra.safetensors";
    d.Write("model.safetensors.index.json", index);
    ExpectError(Open(d), StatusCode::kUnimplemented,
                "tensor 'model.layers.0.self_attn.q_norm.weight' is not used by this engine's qwen2 layer loop",
                (d.path() / "extra.safetensors").string());
  }
}

TEST(HfCheckpoint, IndexErrors) {
  const std::string index_name = "model.safetensors.index.json";
  auto with_index = [&](const std::function<void(json&)>& edit, StatusCode code, const std::string& error,
                        const std::string& file) {
    SCOPED_TRACE(error);
    ScratchDir d("qwen2_tied");
    json index = d.Read(index_name);
    edit(index);
    d.Write(index_name, index);
    ExpectError(Open(d), code, error, file.empty() ? (d.path() / index_name).string() : (d.path() / file).string());
  };
  const std::string embed = "model.embed_tokens.weight";
  with_index([&](json& j) { j["weight_map"].erase(embed); }, StatusCode::kInvalidArgument,
             "tensor 'model.embed_tokens.weight' is not listed in ", "model-00001-of-00004.safetensors");
  with_index([&](json& j) { j["weight_map"][embed] = "model-00004-of-00004.safetensors"; }, StatusCode::kInvalidArgument,
             "model.safetensors.index.json under shard 'model-00004-of-00004.safetensors'",
             "model-00001-of-00004.safetensors");
  with_index([&](json& j) { j["weight_map"]["model.extra.weight"] = "model-00001-of-00004.safetensors"; },
             StatusCode::kInvalidArgument,
             "tensor 'model.extra.weight' is mapped to shard 'model-00001-of-00004.safetensors', which does not hold it", "");
  with_index([&](json& j) { j["weight_map"][embed] = "model-00009-of-00009.safetensors"; }, StatusCode::kInvalidArgument,
             "names shard 'model-00009-of-00009.safetensors', which does not exist", "");
  with_index([&](json& j) { j["weight_map"][embed] = "../model.safetensors"; }, StatusCode::kInvalidArgument,
             "names '../model.safetensors', not a .safetensors file in the checkpoint directory", "");
  with_index([&](json& j) { j["weight_map"][embed] = 3; }, StatusCode::kInvalidArgument,
             "'weight_map' entry 'model.embed_tokens.weight' is not a file name string", "");
  with_index([&](json& j) { j.erase("weight_map"); }, StatusCode::kInvalidArgument, "'weight_map' must be a non-empty object", "");
  with_index([&](json& j) { j["shards"] = 4; }, StatusCode::kInvalidArgument, "unknown key 'shards'", "");
}

}  // namespace
}  // namespace slim
