// Where model weights come from: a GGUF file (dequantized to fp32 on read), a Hugging Face
// safetensors checkpoint directory (converted to fp32 on read) or a synthetic model (seeded
// random weights of a named shape). Weights are read by name with their shape
// checked; every failure names the tensor and the file.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "engine/core/status.h"
#include "engine/model/model_config.h"

namespace slim {
namespace gguf { class GgufFile; }

// How a synthetic tensor's values are generated, so that a device backend can produce them in
// place: element i (row-major over the tensor) draws z = splitmix64 output number i + 1 from
// `state`, u = (z >> 40) * 2^-24 in [0, 1), and is 1 + 0.1 * (u - 0.5) for norm weights,
// (2u - 1) * half_width otherwise (SyntheticValue below is the host definition).
struct SyntheticFill {
  uint64_t state = 0;
  float half_width = 0.0f;
  bool is_norm = false;
};

float SyntheticValue(const SyntheticFill& f, int64_t i);

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual const ModelConfig& config() const = 0;
  virtual std::string Describe() const = 0;
  virtual bool Has(const std::string& name) const = 0;
  // Fills out[rows * cols] with tensor `name`, whose GGUF dims must be [cols, rows] (or [cols]
  // for rows == 1).
  virtual Status ReadF32(const std::string& name, int64_t rows, int64_t cols, float* out) const = 0;
  // Synthetic sources: the generator of tensor `name` with `cols` columns; nullopt otherwise.
  virtual std::optional<SyntheticFill> SyntheticSpec(const std::string& name, int64_t cols) const {
    return std::nullopt;
  }
  // The underlying GGUF file (tokenizer metadata), or nullptr for the other sources.
  virtual const gguf::GgufFile* gguf_file() const { return nullptr; }
  // A Hugging Face checkpoint's directory (tokenizer.json lies there), or empty.
  virtual std::string hf_checkpoint_dir() const { return {}; }
};

StatusOr<std::unique_ptr<WeightSource>> OpenGgufWeights(const std::string& path);

// `name`: "llama-3.1-8b", "smollm2-135m" or "tiny" (tests) (also accepted with a "synthetic:" prefix).
StatusOr<std::unique_ptr<WeightSource>> MakeSyntheticWeights(const std::string& name, uint64_t seed);
// The config of a synthetic model, NotFound for unknown names.
StatusOr<ModelConfig> SyntheticConfig(const std::string& name);

// A Hugging Face checkpoint directory: config.json (model_type llama, qwen2 or mistral) and
// model.safetensors, or shards listed by model.safetensors.index.json. Tensors are mapped onto
// the GGUF names Model::Load reads; Q/K rows are in the rotate-half layout (rope_neox). Every
// failure names the key or tensor and the file.
StatusOr<std::unique_ptr<WeightSource>> OpenHfWeights(const std::string& dir);

// "synthetic:NAME" -> synthetic, a directory -> Hugging Face checkpoint, anything else -> GGUF path.
StatusOr<std::unique_ptr<WeightSource>> OpenWeights(const std::string& model, uint64_t seed = 0);

}  // namespace slim
