// UTF-8 helpers of the tokenizer, following llama.cpp's unicode.cpp and the Unicode standard's
// "maximal subpart" rule for replacement characters.
// Thread-safety: free functions, no state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/core/status.h"

namespace slim {

enum class Utf8Result { kValid, kTruncated, kInvalid };

// Classifies the sequence starting at p[0] (n >= 1 bytes available). kValid: *len is its length.
// kTruncated: a valid prefix that runs past the end (*len = n). kInvalid: *len is the length of
// the maximal ill-formed subpart (>= 1), the unit that U+FFFD replaces.
Utf8Result NextUtf8(const unsigned char* p, size_t n, size_t* len);
// The code point of a sequence NextUtf8 called valid.
uint32_t DecodeValidUtf8(const unsigned char* p, size_t len);
// Appends the UTF-8 encoding of `cp`.
void AppendUtf8(uint32_t cp, std::string* out);
// InvalidArgument naming the byte offset of the first invalid sequence.
Status CheckUtf8(std::string_view text);
// Moves the longest decodable prefix of *pending to the result; ill-formed subparts become
// U+FFFD. A truncated trailing sequence is kept for later unless `flush`.
std::string TakeUtf8(std::string* pending, bool flush);

}  // namespace slim
