// safetensors container parser: the 8-byte header length, the JSON header (tensor name ->
// dtype, shape, data_offsets; optional __metadata__ string map) and a memory-mapped data
// section. Validates everything it reads and never trusts a length or offset; every failure is
// an InvalidArgument naming the file (and the tensor). Knows nothing of model semantics.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/core/mapped_file.h"
#include "engine/core/status.h"

namespace slim::safetensors {

// The element types this engine reads; the parser refuses the others by name.
enum class DType { kF32, kF16, kBF16 };
const char* DTypeName(DType t);
size_t DTypeBytes(DType t);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;     // row-major: shape.back() is the contiguous dimension
  uint64_t n_elements = 0;        // product of shape (1 for a scalar)
  uint64_t begin = 0, end = 0;    // data_offsets, relative to the data section
  const uint8_t* data = nullptr;  // points into the mapping; valid while the file lives
};

// Thread-safety: immutable after Open/FromBuffer; any thread may call the const methods.
class SafetensorsFile {
 public:
  // Header length cap: real headers take ~100 bytes per tensor.
  static constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

  // Maps `path` read-only and parses it.
  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Parses a caller-owned buffer (fuzzing, tests); the buffer must outlive the file object.
  static StatusOr<std::unique_ptr<SafetensorsFile>> FromBuffer(std::span<const uint8_t> bytes, std::string name);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // __metadata__, sorted by key.
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }
  // In data order (by offset).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* FindTensor(std::string_view name) const;

  // out[t.n_elements] <- the tensor converted to fp32; InvalidArgument (naming the file and the
  // tensor) at a non-finite value.
  Status ReadF32(const TensorInfo& t, float* out) const;

 private:
  SafetensorsFile() = default;
  Status Parse(std::span<const uint8_t> bytes);

  std::string path_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  MappedFile map_;  // the file's bytes when opened from a path
};

}  // namespace slim::safetensors
