// The API key check both front ends share: gRPC metadata `authorization: Bearer KEY` and the HTTP
// header `Authorization: Bearer KEY`. The comparison takes the same time wherever the keys differ.
// Thread-safety: a pure function.
#pragma once

#include <string_view>

#include "engine/core/status.h"

namespace slim::server {

// OK when `key` is empty (no key configured) or `authorization` is "Bearer <key>";
// UNAUTHENTICATED otherwise. The message never repeats what the client sent.
inline Status CheckBearer(std::string_view key, std::string_view authorization) {
  if (key.empty()) return OkStatus();
  constexpr std::string_view kScheme = "Bearer ";
  bool ok = authorization.size() == kScheme.size() + key.size() && authorization.starts_with(kScheme);
  unsigned char diff = ok ? 0 : 1;
  const std::string_view sent = ok ? authorization.substr(kScheme.size()) : key;
  for (size_t i = 0; i < key.size(); ++i) diff |= static_cast<unsigned char>(sent[i] ^ key[i]);
  if (diff == 0) return OkStatus();
  return Status(StatusCode::kUnauthenticated,
                authorization.empty() ? "missing API key: send the header 'Authorization: Bearer <key>'"
                                      : "invalid API key");
}

}  // namespace slim::server
