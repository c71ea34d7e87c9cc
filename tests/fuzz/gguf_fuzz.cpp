// libFuzzer target for the GGUF parser, the metadata getters, ConfigFromGguf and DequantizeRow.
// Besides crashes and sanitizer reports it traps on broken invariants: an error that does not
// name the file, or a parsed tensor whose first row cannot be dequantized.
// Seeds: tests/fixtures/gguf_seed and tests/fixtures/malformed (scripts/make-malformed-fixtures.py).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/gguf/gguf_file.h"
#include "engine/gguf/quant.h"
#include "engine/model/model_config.h"

namespace {

constexpr int64_t kMaxRowElements = int64_t{1} << 16;

bool NamesFile(const slim::Status& s) { return s.message().rfind("fuzz.gguf: ", 0) == 0; }

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace slim;
  using namespace slim::gguf;
  auto file = GgufFile::FromBuffer(std::span<const uint8_t>(data, size), "fuzz.gguf");
  if (!file.ok()) {
    Check(file.status().code() == StatusCode::kInvalidArgument && NamesFile(file.status()));
    return 0;
  }
  const GgufFile& g = **file;

  // Every getter on every key: each returns a value or a status, never anything else.
  for (const auto& [key, value] : g.metadata()) {
    Check(g.Find(key) == &value);
    (void)g.GetString(key);
    (void)g.GetUint(key);
    (void)g.GetInt(key);
    (void)g.GetFloat(key);
    (void)g.GetBool(key);
    (void)g.GetStringArray(key);
    (void)g.GetIntArray(key);
    (void)g.GetFloatArray(key);
  }

  auto config = ConfigFromGguf(g);
  if (config.ok()) {
    Check(config->Validate().ok());
  } else {
    Check(NamesFile(config.status()));
  }

  // The parser promised each tensor lies inside the buffer: read its first row.
  std::vector<float> row;
  for (const TensorInfo& t : g.tensors()) {
    Check(g.FindTensor(t.name) == &t);
    Check(t.data >= data && t.data + t.n_bytes <= data + size);
    if (!CanDequantize(t.type) || t.dims[0] > kMaxRowElements) continue;
    row.resize(static_cast<size_t>(t.dims[0]));
    Check(DequantizeRow(t.type, t.data, row.data(), t.dims[0]).ok());
  }
  return 0;
}
