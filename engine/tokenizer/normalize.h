// Unicode normalization of tokenizer input (tokenizer.json's NFC normalizer), through ICU.
// Thread-safety: free function; ICU's normalizer instances are immutable and shared.
#pragma once

#include <string>
#include <string_view>

#include "engine/core/status.h"

namespace slim {

// NFC of valid UTF-8 text; Internal when ICU fails.
StatusOr<std::string> NfcNormalize(std::string_view text);

}  // namespace slim
