// UTF-8 classification, decoding, validation and the stream decoder's splitting.
#include "engine/tokenizer/utf8.h"

#include <cstdio>

namespace slim {

// Classifies the sequence starting at p[0] (n >= 1 bytes available). kValid: *len is its length.
// kTruncated: a valid prefix that runs past the end (*len = n). kInvalid: *len is the length of
// the maximal ill-formed subpart (>= 1), the unit that U+FFFD replaces.
Utf8Result NextUtf8(const unsigned char* p, size_t n, size_t* len) {
  const unsigned char b0 = p[0];
  if (b0 < 0x80) {
    *len = 1;
    return Utf8Result::kValid;
  }
  size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlongs
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;  // no overlongs
    if (b0 == 0xF4) hi = 0x8F;  // <= U+10FFFF
  } else {
    *len = 1;
    return Utf8Result::kInvalid;
  }
  for (size_t i = 1; i < need; ++i) {
    if (i >= n) {
      *len = i;
      return Utf8Result::kTruncated;
    }
    const unsigned char b = p[i];
    if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) {
      *len = i;
      return Utf8Result::kInvalid;
    }
  }
  *len = need;
  return Utf8Result::kValid;
}

uint32_t DecodeValidUtf8(const unsigned char* p, size_t len) {
  switch (len) {
    case 1: return p[0];
    case 2: return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    case 3: return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    default: return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
  }
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

Status CheckUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    if (NextUtf8(p + i, text.size() - i, &len) != Utf8Result::kValid) {
      char buf[96];
      std::snprintf(buf, sizeof(buf), "text is not valid UTF-8: bad byte 0x%02X at byte offset %zu",
                    static_cast<unsigned>(p[i]), i);
      return InvalidArgumentError(buf);
    }
    i += len;
  }
  return OkStatus();
}

// Moves the longest decodable prefix of *pending to the result; ill-formed subparts become
// U+FFFD. A truncated trailing sequence is kept for later unless `flush`.
std::string TakeUtf8(std::string* pending, bool flush) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(pending->data());
  const size_t n = pending->size();
  size_t i = 0;
  while (i < n) {
    size_t len = 0;
    const Utf8Result r = NextUtf8(p + i, n - i, &len);
    if (r == Utf8Result::kValid) {
      out.append(pending->data() + i, len);
    } else if (r == Utf8Result::kTruncated && !flush) {
      break;
    } else {
      out.append("\xEF\xBF\xBD");
    }
    i += len;
  }
  pending->erase(0, i);
  return out;
}

}  // namespace slim
