// Client values in status messages: quoted and cut short, so that a huge value (a 100 KB role
// or request id) cannot push a status message past the transport's metadata limit, where the
// client would get RESOURCE_EXHAUSTED instead of the real error.
// Thread-safety: a pure function.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace slim::server {

// The most bytes of a client value that a status message repeats.
inline constexpr size_t kMaxQuotedBytes = 64;

// 'value' when it has at most kMaxQuotedBytes bytes, else its first ~64 bytes (cut at a UTF-8
// character boundary), then "...' (N bytes)". Use this wherever a client value goes into a
// status message.
inline std::string QuoteClientValue(std::string_view v) {
  if (v.size() <= kMaxQuotedBytes) return "'" + std::string(v) + "'";
  size_t n = kMaxQuotedBytes;
  while (n > 0 && (static_cast<unsigned char>(v[n]) & 0xC0) == 0x80) --n;  // not inside a character
  return "'" + std::string(v.substr(0, n)) + "...' (" + std::to_string(v.size()) + " bytes)";
}

}  // namespace slim::server
