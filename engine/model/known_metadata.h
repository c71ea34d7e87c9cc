// CheckKnownMetadata: every GGUF metadata key this engine knows the meaning of is checked for
// type (and, for per-token arrays and token ids, length and range) whether or not the model at
// hand reads it, so a file with a corrupt key fails at load naming the key and the file instead
// of loading while a mistyped value is ignored. Unknown keys are left alone (GGUF files carry
// many that do not concern inference).
#pragma once

#include "engine/core/status.h"

namespace slim {
namespace gguf { class GgufFile; }

// InvalidArgument naming the file and the key.
Status CheckKnownMetadata(const gguf::GgufFile& file);

}  // namespace slim
