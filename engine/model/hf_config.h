// A Hugging Face checkpoint's config.json -> ModelConfig, for model_type llama, qwen2 and
// mistral. Every key is accounted for: read, known not to change the forward pass, or refused
// by name (a key this engine does not know may change the math). Knows nothing of weights.
#pragma once

#include <string>
#include <string_view>

#include "engine/core/status.h"
#include "engine/model/model_config.h"

namespace slim {

// `text`: the JSON of config.json; `path` names it in errors ("<path>: 'key' ..."). The
// config's name is left empty (the caller names the checkpoint).
StatusOr<ModelConfig> ConfigFromHfJson(std::string_view text, const std::string& path);

// Reads and parses `path` (at most 16 MB).
StatusOr<ModelConfig> ConfigFromHfFile(const std::string& path);

}  // namespace slim
