// GGUF and synthetic weight sources, and the dispatch of OpenWeights (HF checkpoints: hf_weights.cpp).
#include "engine/model/weight_source.h"

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/gguf/gguf_file.h"
#include "engine/gguf/quant.h"

namespace slim {
namespace {

std::string DimsString(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

class GgufWeights final : public WeightSource {
 public:
  GgufWeights(std::unique_ptr<gguf::GgufFile> file, ModelConfig config)
      : file_(std::move(file)), config_(std::move(config)) {}

  const ModelConfig& config() const override { return config_; }
  std::string Describe() const override { return file_->path(); }
  bool Has(const std::string& name) const override { return file_->FindTensor(name) != nullptr; }
  const gguf::GgufFile* gguf_file() const override { return file_.get(); }

  Status ReadF32(const std::string& name, int64_t rows, int64_t cols, float* out) const override {
    const gguf::TensorInfo* t = file_->FindTensor(name);
    if (t == nullptr) return NotFoundError(file_->path() + ": missing tensor '" + name + "'");
    const bool shape_ok = (t->dims.size() == 2 && t->dims[0] == cols && t->dims[1] == rows) ||
                          (t->dims.size() == 1 && rows == 1 && t->dims[0] == cols);
    if (!shape_ok) {
      return InvalidArgumentError(file_->path() + ": tensor '" + name + "' has shape " +
                                  DimsString(t->dims) + ", expected " +
                                  DimsString(rows == 1 ? std::vector<int64_t>{cols}
                                                       : std::vector<int64_t>{cols, rows}));
    }
    if (!gguf::CanDequantize(t->type)) {
      return UnimplementedError(file_->path() + ": tensor '" + name + "' has type " +
                                gguf::TensorTypeName(t->type) + ", which this engine cannot read");
    }
    Status s = gguf::DequantizeRow(t->type, t->data, out, rows * cols);
    if (!s.ok()) return s.WithPrefix(file_->path() + ": tensor '" + name + "'");
    for (int64_t i = 0; i < rows * cols; ++i) {
      if (!std::isfinite(out[i])) {
        return InvalidArgumentError(file_->path() + ": tensor '" + name + "' holds a non-finite value at element " +
                                    std::to_string(i));
      }
    }
    return OkStatus();
  }

 private:
  std::unique_ptr<gguf::GgufFile> file_;
  ModelConfig config_;
};

// splitmix64: fast, seedable, identical everywhere.
uint64_t SplitMix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t HashName(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

class SyntheticWeights final : public WeightSource {
 public:
  SyntheticWeights(std::string name, ModelConfig config, uint64_t seed)
      : name_(std::move(name)), config_(std::move(config)), seed_(seed) {}

  const ModelConfig& config() const override { return config_; }
  std::string Describe() const override { return "synthetic:" + name_ + " (seed " + std::to_string(seed_) + ")"; }
  // The tensors a LLaMA GGUF would hold; no rope_freqs (synthetic RoPE scaling comes from the
  // config), no output.weight when tied.
  bool Has(const std::string& name) const override {
    if (name == "token_embd.weight" || name == "output_norm.weight") return true;
    if (name == "output.weight") return !config_.tied_embeddings;
    return name.rfind("blk.", 0) == 0;
  }

  // Norm weights are 1 + small noise; matrices uniform with std 1 / sqrt(fan-in), so
  // activations stay of order one at every depth; embeddings std 1.
  std::optional<SyntheticFill> SyntheticSpec(const std::string& name, int64_t cols) const override {
    SyntheticFill f;
    f.state = seed_ ^ HashName(name);
    f.is_norm = name.find("norm") != std::string::npos;
    const float std_dev = name == "token_embd.weight" ? 1.0f : 1.0f / std::sqrt(static_cast<float>(cols));
    f.half_width = std_dev * 1.7320508f;  // uniform(-a, a) has std a / sqrt(3)
    return f;
  }

  Status ReadF32(const std::string& name, int64_t rows, int64_t cols, float* out) const override {
    const SyntheticFill f = *SyntheticSpec(name, cols);
    uint64_t state = f.state;
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float u = static_cast<float>(SplitMix(state) >> 40) * (1.0f / 16777216.0f);  // [0, 1)
      out[i] = f.is_norm ? 1.0f + 0.1f * (u - 0.5f) : (2.0f * u - 1.0f) * f.half_width;
    }
    return OkStatus();
  }

 private:
  std::string name_;
  ModelConfig config_;
  uint64_t seed_;
};

}  // namespace

float SyntheticValue(const SyntheticFill& f, int64_t i) {
  uint64_t state = f.state + static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ULL;
  const float u = static_cast<float>(SplitMix(state) >> 40) * (1.0f / 16777216.0f);
  return f.is_norm ? 1.0f + 0.1f * (u - 0.5f) : (2.0f * u - 1.0f) * f.half_width;
}

StatusOr<std::unique_ptr<WeightSource>> OpenGgufWeights(const std::string& path) {
  SLIM_ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> file, gguf::GgufFile::Open(path));
  SLIM_ASSIGN_OR_RETURN(ModelConfig config, ConfigFromGguf(*file));
  return std::unique_ptr<WeightSource>(new GgufWeights(std::move(file), std::move(config)));
}

StatusOr<ModelConfig> SyntheticConfig(const std::string& raw) {
  std::string name = raw.rfind("synthetic:", 0) == 0 ? raw.substr(10) : raw;
  ModelConfig c;
  c.arch = "llama";
  c.name = "synthetic:" + name;
  if (name == "llama-3.1-8b") {
    c.n_layers = 32; c.n_heads = 32; c.n_kv_heads = 8; c.d_model = 4096; c.d_ff = 14336;
    c.head_dim = 128; c.rope_dim = 128; c.vocab_size = 128256; c.context_length = 131072;
    c.rope_theta = 500000.0f; c.rms_eps = 1e-5f; c.tied_embeddings = false;
    c.rope_scaling.type = RopeScaling::Type::kLlama3;
    c.rope_scaling.factor = 8.0f; c.rope_scaling.low_freq_factor = 1.0f;
    c.rope_scaling.high_freq_factor = 4.0f; c.rope_scaling.original_context = 8192;
  } else if (name == "smollm2-135m") {
    c.n_layers = 30; c.n_heads = 9; c.n_kv_heads = 3; c.d_model = 576; c.d_ff = 1536;
    c.head_dim = 64; c.rope_dim = 64; c.vocab_size = 49152; c.context_length = 8192;
    c.rope_theta = 100000.0f; c.rms_eps = 1e-5f; c.tied_embeddings = true;
  } else if (name == "tiny") {
    // For tests: every code path of the layer loop at a size that runs in milliseconds.
    c.n_layers = 3; c.n_heads = 4; c.n_kv_heads = 2; c.d_model = 64; c.d_ff = 96;
    c.head_dim = 16; c.rope_dim = 16; c.vocab_size = 300; c.context_length = 2048;
    c.rope_theta = 10000.0f; c.rms_eps = 1e-5f; c.tied_embeddings = false;
  } else {
    return NotFoundError("unknown synthetic model '" + name + "' (known: llama-3.1-8b, smollm2-135m, tiny)");
  }
  SLIM_RETURN_IF_ERROR(c.Validate());
  return c;
}

StatusOr<std::unique_ptr<WeightSource>> MakeSyntheticWeights(const std::string& raw, uint64_t seed) {
  SLIM_ASSIGN_OR_RETURN(ModelConfig c, SyntheticConfig(raw));
  std::string name = c.name.substr(10);
  return std::unique_ptr<WeightSource>(new SyntheticWeights(name, std::move(c), seed));
}

StatusOr<std::unique_ptr<WeightSource>> OpenWeights(const std::string& model, uint64_t seed) {
  if (model.rfind("synthetic:", 0) == 0) return MakeSyntheticWeights(model, seed);
  std::error_code ec;
  if (std::filesystem::is_directory(model, ec)) return OpenHfWeights(model);
  return OpenGgufWeights(model);
}

}  // namespace slim
