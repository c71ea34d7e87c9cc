// Opens the default model for the GGUF tests; a missing or unreadable file is a test failure
// (not a skip) that says how to fetch it.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "engine/gguf/gguf_file.h"

namespace slim::gguf::testing {

inline std::unique_ptr<GgufFile> OpenDefaultModel() {
  if (!std::filesystem::exists(SLIM_DEFAULT_MODEL)) {
    ADD_FAILURE() << "default model " << SLIM_DEFAULT_MODEL << " is missing: run scripts/fetch-model.sh";
    return nullptr;
  }
  auto f = GgufFile::Open(SLIM_DEFAULT_MODEL);
  if (!f.ok()) {
    ADD_FAILURE() << f.status().ToString();
    return nullptr;
  }
  return std::move(f).value();
}

}  // namespace slim::gguf::testing
