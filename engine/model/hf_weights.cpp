// The Hugging Face checkpoint weight source: config.json, one model.safetensors or shards listed
// by model.safetensors.index.json, HF tensor names mapped onto the names Model::Load reads
// (token_embd, blk.N.attn_q, ...). Every tensor is accounted for and shape-checked at open.
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "engine/model/hf_config.h"
#include "engine/model/safetensors.h"
#include "engine/model/weight_source.h"

namespace slim {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using safetensors::SafetensorsFile;
using safetensors::TensorInfo;

constexpr size_t kMaxIndexBytes = size_t{64} << 20;
constexpr const char* kSingle = "model.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";

std::string ShapeString(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

// One tensor the layer loop reads: its HF name, the name Model::Load asks for, its shape.
struct Expected {
  std::string hf, ours;
  std::vector<int64_t> shape;
};

// Every tensor a checkpoint of config `c` must hold (transformers' LlamaForCausalLM,
// Qwen2ForCausalLM and MistralForCausalLM state dicts).
std::vector<Expected> ExpectedTensors(const ModelConfig& c) {
  const int64_t d = c.d_model, qd = int64_t{c.n_heads} * c.head_dim, kvd = int64_t{c.n_kv_heads} * c.head_dim,
                ff = c.d_ff, v = c.vocab_size;
  std::vector<Expected> e = {{"model.embed_tokens.weight", "token_embd.weight", {v, d}},
                             {"model.norm.weight", "output_norm.weight", {d}}};
  if (!c.tied_embeddings) e.push_back({"lm_head.weight", "output.weight", {v, d}});
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string hf = "model.layers." + std::to_string(l) + ".", ours = "blk." + std::to_string(l) + ".";
    auto add = [&](const char* h, const char* o, std::vector<int64_t> shape) {
      e.push_back({hf + h, ours + o, std::move(shape)});
    };
    add("input_layernorm.weight", "attn_norm.weight", {d});
    add("self_attn.q_proj.weight", "attn_q.weight", {qd, d});
    add("self_attn.k_proj.weight", "attn_k.weight", {kvd, d});
    add("self_attn.v_proj.weight", "attn_v.weight", {kvd, d});
    add("self_attn.o_proj.weight", "attn_output.weight", {d, qd});
    add("post_attention_layernorm.weight", "ffn_norm.weight", {d});
    add("mlp.gate_proj.weight", "ffn_gate.weight", {ff, d});
    add("mlp.up_proj.weight", "ffn_up.weight", {ff, d});
    add("mlp.down_proj.weight", "ffn_down.weight", {d, ff});
    if (c.qkv_bias) {
      add("self_attn.q_proj.bias", "attn_q.bias", {qd});
      add("self_attn.k_proj.bias", "attn_k.bias", {kvd});
      add("self_attn.v_proj.bias", "attn_v.bias", {kvd});
    }
  }
  return e;
}

// Older checkpoints carry each layer's RoPE inverse frequencies as a buffer; transformers
// recomputes them from config.json, as we do.
bool IsRotaryBuffer(const std::string& name) {
  return name.starts_with("model.layers.") && name.ends_with(".self_attn.rotary_emb.inv_freq");
}

struct Located {
  const SafetensorsFile* file = nullptr;
  const TensorInfo* tensor = nullptr;
};

class HfWeights final : public WeightSource {
 public:
  HfWeights(std::string dir, ModelConfig config, std::vector<std::unique_ptr<SafetensorsFile>> files)
      : dir_(std::move(dir)), config_(std::move(config)), files_(std::move(files)) {}

  const ModelConfig& config() const override { return config_; }
  std::string Describe() const override {
    std::set<std::string> dtypes;
    for (const auto& [_, at] : by_ours_) dtypes.insert(safetensors::DTypeName(at.tensor->dtype));
    std::string d;
    for (const std::string& t : dtypes) d += (d.empty() ? "" : "+") + t;
    return dir_ + " (Hugging Face safetensors checkpoint, " + std::to_string(files_.size()) +
           (files_.size() == 1 ? " file, " : " shards, ") + d + ")";
  }
  bool Has(const std::string& name) const override { return by_ours_.count(name) != 0; }
  std::string hf_checkpoint_dir() const override { return dir_; }

  Status ReadF32(const std::string& name, int64_t rows, int64_t cols, float* out) const override {
    auto it = by_ours_.find(name);
    if (it == by_ours_.end()) return NotFoundError(dir_ + ": no tensor maps to '" + name + "'");
    const Located& at = it->second;
    const std::vector<int64_t>& s = at.tensor->shape;
    const bool ok = (s.size() == 2 && s[0] == rows && s[1] == cols) || (s.size() == 1 && rows == 1 && s[0] == cols);
    if (!ok) {
      return InvalidArgumentError(at.file->path() + ": tensor '" + at.tensor->name + "' has shape " + ShapeString(s) +
                                  ", expected " + ShapeString(rows == 1 ? std::vector<int64_t>{cols}
                                                                        : std::vector<int64_t>{rows, cols}));
    }
    return at.file->ReadF32(*at.tensor, out);
  }

  // Maps every tensor of the files, refusing unknown, missing and mis-shaped ones.
  Status Index() {
    std::map<std::string, Expected> expected;
    for (Expected& e : ExpectedTensors(config_)) expected.emplace(e.hf, std::move(e));
    for (const auto& f : files_) {
      for (const TensorInfo& t : f->tensors()) {
        auto it = expected.find(t.name);
        if (it == expected.end()) {
          if (IsRotaryBuffer(t.name)) continue;
          if (t.name == "lm_head.weight") {
            return InvalidArgumentError(f->path() + ": tensor 'lm_head.weight' is present, but config.json ties the "
                                        "LM head to the embeddings ('tie_word_embeddings' true): which one is meant "
                                        "is ambiguous");
          }
          return UnimplementedError(f->path() + ": tensor '" + t.name + "' is not used by this engine's " +
                                    config_.arch + " layer loop; refusing to run the model without it");
        }
        if (t.shape != it->second.shape) {
          return InvalidArgumentError(f->path() + ": tensor '" + t.name + "' has shape " + ShapeString(t.shape) +
                                      ", but config.json implies " + ShapeString(it->second.shape));
        }
        by_ours_[it->second.ours] = Located{f.get(), &t};
      }
    }
    for (const auto& [hf, e] : expected) {
      if (by_ours_.count(e.ours) == 0) {
        return InvalidArgumentError(dir_ + ": missing tensor '" + hf + "' (in none of " + FileList() + ")");
      }
    }
    return OkStatus();
  }

 private:
  std::string FileList() const {
    std::string s;
    for (const auto& f : files_) s += (s.empty() ? "" : ", ") + fs::path(f->path()).filename().string();
    return s;
  }

  std::string dir_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Located> by_ours_;  // Model::Load's name -> where the tensor lies
};

StatusOr<std::string> ReadSmallFile(const std::string& path, size_t cap) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(path + ": cannot open");
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > cap) return InvalidArgumentError(path + ": larger than " + std::to_string(cap) + " bytes");
  }
  return text;
}

// The shards model.safetensors.index.json lists, opened, after checking that every weight it
// maps lies in exactly the shard it names and every tensor of a shard is mapped to that shard.
StatusOr<std::vector<std::unique_ptr<SafetensorsFile>>> OpenShards(const fs::path& dir) {
  const std::string index_path = (dir / kIndex).string();
  SLIM_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(index_path, kMaxIndexBytes));
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgumentError(index_path + ": not a JSON object");
  for (const auto& [key, _] : j.items()) {
    if (key != "metadata" && key != "weight_map") {
      return InvalidArgumentError(index_path + ": unknown key '" + key + "' (expected metadata, weight_map)");
    }
  }
  if (!j.contains("weight_map") || !j["weight_map"].is_object() || j["weight_map"].empty()) {
    return InvalidArgumentError(index_path + ": 'weight_map' must be a non-empty object of tensor name -> shard file");
  }
  std::map<std::string, std::string> weight_map;
  std::map<std::string, size_t> shard_index;  // shard file name -> position in files
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (const auto& [name, shard] : j["weight_map"].items()) {
    if (!shard.is_string()) {
      return InvalidArgumentError(index_path + ": 'weight_map' entry '" + name + "' is not a file name string");
    }
    const std::string s = shard.get<std::string>();
    if (s.empty() || s.find('/') != std::string::npos || s == "." || s == ".." || !s.ends_with(".safetensors")) {
      return InvalidArgumentError(index_path + ": 'weight_map' entry '" + name + "' names '" + s +
                                  "', not a .safetensors file in the checkpoint directory");
    }
    weight_map[name] = s;
    if (shard_index.count(s) != 0) continue;
    const std::string shard_path = (dir / s).string();
    if (!fs::is_regular_file(shard_path)) {
      return InvalidArgumentError(index_path + ": 'weight_map' entry '" + name + "' names shard '" + s +
                                  "', which does not exist");
    }
    SLIM_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f, SafetensorsFile::Open(shard_path));
    shard_index[s] = files.size();
    files.push_back(std::move(f));
  }
  for (const auto& [s, i] : shard_index) {
    for (const TensorInfo& t : files[i]->tensors()) {
      auto it = weight_map.find(t.name);
      if (it == weight_map.end()) {
        return InvalidArgumentError(files[i]->path() + ": tensor '" + t.name + "' is not listed in " + index_path);
      }
      if (it->second != s) {
        return InvalidArgumentError(files[i]->path() + ": tensor '" + t.name + "' is listed in " + index_path +
                                    " under shard '" + it->second + "'");
      }
    }
  }
  for (const auto& [name, s] : weight_map) {
    if (files[shard_index[s]]->FindTensor(name) == nullptr) {
      return InvalidArgumentError(index_path + ": tensor '" + name + "' is mapped to shard '" + s +
                                  "', which does not hold it");
    }
  }
  return files;
}

}  // namespace

StatusOr<std::unique_ptr<WeightSource>> OpenHfWeights(const std::string& dir_arg) {
  std::string dir = dir_arg;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const fs::path d(dir);
  std::error_code ec;
  if (!fs::is_directory(d, ec)) return NotFoundError(dir + ": not a directory");
  SLIM_ASSIGN_OR_RETURN(ModelConfig config, ConfigFromHfFile((d / "config.json").string()));
  config.name = d.filename().string();
  const bool single = fs::exists(d / kSingle, ec), sharded = fs::exists(d / kIndex, ec);
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  if (single && sharded) {
    return InvalidArgumentError(dir + ": holds both " + kSingle + " and " + kIndex + "; which weights are meant is ambiguous");
  } else if (single) {
    SLIM_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f, SafetensorsFile::Open((d / kSingle).string()));
    files.push_back(std::move(f));
  } else if (sharded) {
    SLIM_ASSIGN_OR_RETURN(files, OpenShards(d));
  } else {
    const bool pt = fs::exists(d / "pytorch_model.bin", ec) || fs::exists(d / "pytorch_model.bin.index.json", ec);
    return NotFoundError(dir + ": no " + kSingle + " or " + kIndex +
                         (pt ? " (pytorch_model.bin checkpoints are not supported: convert them to safetensors)" : ""));
  }
  auto w = std::make_unique<HfWeights>(dir, std::move(config), std::move(files));
  SLIM_RETURN_IF_ERROR(w->Index());
  return std::unique_ptr<WeightSource>(std::move(w));
}

}  // namespace slim
