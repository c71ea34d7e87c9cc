// A read-only memory mapping of a whole regular file (the GGUF and safetensors readers' input).
// Move-only; unmapped on destruction. Thread-safety: immutable after Open.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "engine/core/status.h"

namespace slim {

class MappedFile {
 public:
  // NotFound / PermissionDenied / InvalidArgument when the path cannot be opened, InvalidArgument
  // for something other than a regular file, ResourceExhausted when mmap fails. An empty file
  // maps to no bytes (the caller's parser says what that means).
  static StatusOr<MappedFile> Open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> bytes() const { return {static_cast<const uint8_t*>(map_), size_}; }

 private:
  void* map_ = nullptr;
  size_t size_ = 0;
};

}  // namespace slim
