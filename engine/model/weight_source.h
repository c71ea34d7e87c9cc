// Where model weights come from: a GGUF file (dequantized to fp32 on read) or a synthetic
// model (seeded random weights of a named shape). Weights are read by name with their shape
// checked; every failure names the tensor and the file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/core/status.h"
#include "engine/model/model_config.h"

namespace slim {
namespace gguf { class GgufFile; }

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual const ModelConfig& config() const = 0;
  virtual std::string Describe() const = 0;
  virtual bool Has(const std::string& name) const = 0;
  // Fills out[rows * cols] with tensor `name`, whose GGUF dims must be [cols, rows] (or [cols]
  // for rows == 1).
  virtual Status ReadF32(const std::string& name, int64_t rows, int64_t cols, float* out) const = 0;
  // The underlying GGUF file (tokenizer metadata), or nullptr for synthetic models.
  virtual const gguf::GgufFile* gguf_file() const { return nullptr; }
};

StatusOr<std::unique_ptr<WeightSource>> OpenGgufWeights(const std::string& path);

// `name`: "llama-3.1-8b", "smollm2-135m" or "tiny" (tests) (also accepted with a "synthetic:" prefix).
StatusOr<std::unique_ptr<WeightSource>> MakeSyntheticWeights(const std::string& name, uint64_t seed);
// The config of a synthetic model, NotFound for unknown names.
StatusOr<ModelConfig> SyntheticConfig(const std::string& name);

// "synthetic:NAME" -> synthetic, anything else -> GGUF path.
StatusOr<std::unique_ptr<WeightSource>> OpenWeights(const std::string& model, uint64_t seed = 0);

}  // namespace slim
