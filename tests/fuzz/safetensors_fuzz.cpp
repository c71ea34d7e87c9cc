// libFuzzer target for the safetensors parser and its fp32 conversion. Besides crashes and
// sanitizer reports it traps on broken invariants: an error that is not an InvalidArgument
// naming the file, a tensor outside the buffer, tensors that do not tile the data section in
// order, a lookup that does not find a listed tensor, or a conversion error other than a
// non-finite value.
// Seeds: tests/fixtures/safetensors_seed and tests/fixtures/malformed_safetensors
// (scripts/make-malformed-safetensors.py).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "engine/model/safetensors.h"

namespace {

constexpr uint64_t kMaxConvertElements = uint64_t{1} << 16;

bool NamesFile(const slim::Status& s) { return s.message().rfind("fuzz.safetensors: ", 0) == 0; }

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace slim;
  using namespace slim::safetensors;
  auto file = SafetensorsFile::FromBuffer(std::span<const uint8_t>(data, size), "fuzz.safetensors");
  if (!file.ok()) {
    Check(file.status().code() == StatusCode::kInvalidArgument && NamesFile(file.status()));
    return 0;
  }
  const SafetensorsFile& f = **file;
  uint64_t header_len = 0;
  Check(size >= 8);
  std::memcpy(&header_len, data, 8);
  const uint8_t* data_start = data + 8 + header_len;
  uint64_t at = 0;
  std::vector<float> out;
  for (const TensorInfo& t : f.tensors()) {
    Check(f.FindTensor(t.name) == &t);
    Check(t.begin == at && t.end >= t.begin);
    Check(t.end - t.begin == t.n_elements * DTypeBytes(t.dtype));
    Check(t.data == data_start + t.begin && t.data + (t.end - t.begin) <= data + size);
    at = t.end;
    if (t.n_elements > kMaxConvertElements) continue;
    out.resize(t.n_elements);
    const Status s = f.ReadF32(t, out.data());
    Check(s.ok() || (s.code() == StatusCode::kInvalidArgument && NamesFile(s) &&
                     s.message().find("non-finite") != std::string::npos));
  }
  Check(data_start + at == data + size);
  return 0;
}
