// safetensors parser: header length and JSON checks, per-tensor entry checks (dtype, shape,
// data_offsets), data-section coverage (sorted, contiguous, inside the file), fp32 conversion.
// Every malformed input is an InvalidArgument naming the file and, where one is at fault, the tensor.
#include "engine/model/safetensors.h"


#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/gguf/quant.h"

namespace slim::safetensors {
namespace {

static_assert(std::endian::native == std::endian::little, "the safetensors reader assumes a little-endian host");

using json = nlohmann::json;

// A valid header nests three levels (header, tensor entry, shape); deeper input is refused
// before the JSON parser builds it.
constexpr int kMaxDepth = 8;
constexpr size_t kMaxRank = 8;

// Printable form of a possibly hostile name: at most 64 bytes, control characters as \xNN.
// (JSON strings are valid UTF-8 once parsed; raw input bytes need escape_non_ascii.)
std::string Quote(std::string_view s, bool escape_non_ascii = false) {
  std::string out = "'";
  const size_t n = std::min<size_t>(s.size(), 64);
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F || (escape_non_ascii && c >= 0x80)) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > n) out += "...";
  return out + "'";
}

// The deepest nesting of objects and arrays in `text` (strings skipped); stops counting past kMaxDepth.
int NestingDepth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') deepest = std::max(deepest, ++depth);
    else if (c == '}' || c == ']') --depth;
    if (deepest > kMaxDepth) break;
  }
  return deepest;
}

// safetensors dtypes this engine does not read (named in the error) and the ones it does.
constexpr std::string_view kOtherDTypes[] = {"BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F64",
                                             "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"};

bool ParseDType(const std::string& s, DType* out) {
  if (s == "F32") *out = DType::kF32;
  else if (s == "F16") *out = DType::kF16;
  else if (s == "BF16") *out = DType::kBF16;
  else return false;
  return true;
}

std::string JsonKind(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a bool";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a non-integer number";
    default: return "an unsupported value";
  }
}

// A non-negative integer that fits int64, or an error naming `what`.
Status NonNegativeInt(const json& v, const std::string& what, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    if (*out > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return InvalidArgumentError(what + " = " + std::to_string(*out) + " is too large");
    }
    return OkStatus();
  }
  if (v.is_number_integer()) return InvalidArgumentError(what + " = " + std::to_string(v.get<int64_t>()) + " is negative");
  return InvalidArgumentError(what + " is " + JsonKind(v) + ", expected a non-negative integer");
}

// Parses the header JSON; duplicate keys in any object are an error (a JSON object keeps only
// the last of them, which would hide a tensor).
StatusOr<json> ParseHeaderJson(std::string_view text) {
  if (text.empty() || text.front() != '{') return InvalidArgumentError("header does not start with '{'");
  // The JSON parser stops at a NUL as at the end of input; no valid header holds one.
  if (const size_t nul = text.find('\0'); nul != std::string_view::npos) {
    return InvalidArgumentError("header is not valid JSON: NUL byte at offset " + std::to_string(nul));
  }
  if (NestingDepth(text) > kMaxDepth) {
    return InvalidArgumentError("header JSON nests deeper than " + std::to_string(kMaxDepth) + " levels");
  }
  std::vector<std::set<std::string>> open;  // keys seen in each open object
  std::string duplicate;
  auto cb = [&](int /*depth*/, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) {
      open.emplace_back();
    } else if (ev == json::parse_event_t::object_end) {
      if (!open.empty()) open.pop_back();
    } else if (ev == json::parse_event_t::key && !open.empty() && duplicate.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!open.back().insert(k).second) duplicate = k;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {
    // The parser's message quotes the input near the error: bounded and escaped like a name.
    std::string what = e.what();
    if (const size_t p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    std::string safe;
    for (size_t i = 0; i < what.size() && i < 240; ++i) {
      const auto c = static_cast<unsigned char>(what[i]);
      safe += c < 0x20 || c >= 0x7F ? Quote(std::string_view(&what[i], 1), true).substr(1, 4) : std::string(1, what[i]);
    }
    if (what.size() > 240) safe += "...";
    return InvalidArgumentError("header is not valid JSON: " + safe);
  }
  if (!duplicate.empty()) return InvalidArgumentError("header has the key " + Quote(duplicate) + " twice");
  if (!j.is_object()) return InvalidArgumentError("header is " + JsonKind(j) + ", expected a JSON object");
  return j;
}

Status ParseMetadata(const json& m, std::vector<std::pair<std::string, std::string>>* out) {
  if (!m.is_object()) return InvalidArgumentError("'__metadata__' is " + JsonKind(m) + ", expected an object of strings");
  for (const auto& [k, v] : m.items()) {
    if (!v.is_string()) {
      return InvalidArgumentError("'__metadata__' entry " + Quote(k) + " is " + JsonKind(v) + ", expected a string");
    }
    out->emplace_back(k, v.get<std::string>());
  }
  return OkStatus();
}

// One tensor entry: {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}. Errors omit
// the tensor's name; the caller prefixes it.
Status ParseEntry(const json& e, TensorInfo* t) {
  if (!e.is_object()) return InvalidArgumentError("entry is " + JsonKind(e) + ", expected an object");
  for (const auto& [k, _] : e.items()) {
    if (k != "dtype" && k != "shape" && k != "data_offsets") return InvalidArgumentError("unknown field " + Quote(k));
  }
  for (const char* k : {"dtype", "shape", "data_offsets"}) {
    if (!e.contains(k)) return InvalidArgumentError("missing field '" + std::string(k) + "'");
  }
  const json& dt = e["dtype"];
  if (!dt.is_string()) return InvalidArgumentError("'dtype' is " + JsonKind(dt) + ", expected a string");
  const std::string dts = dt.get<std::string>();
  if (!ParseDType(dts, &t->dtype)) {
    const bool known = std::find(std::begin(kOtherDTypes), std::end(kOtherDTypes), dts) != std::end(kOtherDTypes);
    return InvalidArgumentError("dtype " + Quote(dts) + (known ? " is not supported" : " is unknown") +
                                " (supported: BF16, F16, F32)");
  }
  const json& shape = e["shape"];
  if (!shape.is_array()) return InvalidArgumentError("'shape' is " + JsonKind(shape) + ", expected an array");
  if (shape.size() > kMaxRank) {
    return InvalidArgumentError("'shape' has rank " + std::to_string(shape.size()) + " (at most " +
                                std::to_string(kMaxRank) + ")");
  }
  uint64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    uint64_t d = 0;
    SLIM_RETURN_IF_ERROR(NonNegativeInt(shape[i], "shape[" + std::to_string(i) + "]", &d));
    t->shape.push_back(static_cast<int64_t>(d));
    if (__builtin_mul_overflow(n, d, &n) || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return InvalidArgumentError("element count of shape overflows");
    }
  }
  t->n_elements = n;
  const json& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2) {
    return InvalidArgumentError("'data_offsets' is " + JsonKind(off) +
                                (off.is_array() ? " of " + std::to_string(off.size()) + " values" : "") +
                                ", expected [begin, end]");
  }
  SLIM_RETURN_IF_ERROR(NonNegativeInt(off[0], "data_offsets[0]", &t->begin));
  SLIM_RETURN_IF_ERROR(NonNegativeInt(off[1], "data_offsets[1]", &t->end));
  if (t->end < t->begin) {
    return InvalidArgumentError("data_offsets [" + std::to_string(t->begin) + ", " + std::to_string(t->end) +
                                "] end before they begin");
  }
  uint64_t bytes = 0;
  const bool overflow = __builtin_mul_overflow(n, DTypeBytes(t->dtype), &bytes);
  if (overflow || bytes != t->end - t->begin) {
    return InvalidArgumentError("data_offsets [" + std::to_string(t->begin) + ", " + std::to_string(t->end) +
                                "] span " + std::to_string(t->end - t->begin) + " bytes, but " + std::to_string(n) +
                                " " + dts + " elements take " +
                                (overflow ? std::string("more than 2^64") : std::to_string(bytes)));
  }
  return OkStatus();
}

// Sorted by offset, the tensors must tile the data section exactly: no gap, no overlap, nothing
// past its end, nothing left over.
Status CheckCoverage(const std::vector<TensorInfo>& ts, uint64_t data_size) {
  uint64_t at = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : ts) {
    const std::string where = "tensor " + Quote(t.name) + " data [" + std::to_string(t.begin) + ", " +
                              std::to_string(t.end) + ")";
    if (t.begin < at) {
      return InvalidArgumentError(where + " overlaps tensor " + Quote(prev->name) + ", which ends at " +
                                  std::to_string(at));
    }
    if (t.begin > at) {
      return InvalidArgumentError(where + " leaves a gap of " + std::to_string(t.begin - at) + " bytes after " +
                                  (prev ? "tensor " + Quote(prev->name) : std::string("the header")));
    }
    if (t.end > data_size) {
      return InvalidArgumentError(where + " runs past the end of the data section (" + std::to_string(data_size) +
                                  " bytes)");
    }
    at = t.end;
    prev = &t;
  }
  if (at != data_size) {
    return InvalidArgumentError(std::to_string(data_size - at) + " bytes at the end of the data section belong to no tensor");
  }
  return OkStatus();
}

}  // namespace

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
  }
  return "?";
}

size_t DTypeBytes(DType t) { return t == DType::kF32 ? 4 : 2; }

Status SafetensorsFile::Parse(std::span<const uint8_t> bytes) {
  auto fail = [&](const Status& s) { return s.WithPrefix(path_); };
  const uint64_t size = bytes.size();
  if (size < 8) {
    return fail(InvalidArgumentError("file is " + std::to_string(size) +
                                     " bytes, too short for the 8-byte header length (expected a safetensors file)"));
  }
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > kMaxHeaderBytes) {
    return fail(InvalidArgumentError("header length " + std::to_string(header_len) + " exceeds the cap of " +
                                     std::to_string(kMaxHeaderBytes) + " bytes"));
  }
  if (header_len > size - 8) {
    return fail(InvalidArgumentError("header length " + std::to_string(header_len) +
                                     " runs past the end of the file (size " + std::to_string(size) + ")"));
  }
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, header_len);
  StatusOr<json> header = ParseHeaderJson(text);
  if (!header.ok()) return fail(header.status());
  for (const auto& [name, entry] : header->items()) {
    if (name == "__metadata__") {
      Status s = ParseMetadata(entry, &metadata_);
      if (!s.ok()) return fail(s);
      continue;
    }
    if (name.empty()) return fail(InvalidArgumentError("a tensor has an empty name"));
    TensorInfo t;
    t.name = name;
    Status s = ParseEntry(entry, &t);
    if (!s.ok()) return fail(s.WithPrefix("tensor " + Quote(name)));
    tensors_.push_back(std::move(t));
  }
  // Stable: tensors at the same offset keep the header's (name) order, so errors are reproducible.
  std::stable_sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const uint64_t data_start = 8 + header_len;
  Status s = CheckCoverage(tensors_, size - data_start);
  if (!s.ok()) return fail(s);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    tensors_[i].data = bytes.data() + data_start + tensors_[i].begin;
    index_.emplace(tensors_[i].name, i);
  }
  return OkStatus();
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  SLIM_ASSIGN_OR_RETURN(MappedFile map, MappedFile::Open(path));
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_ = std::move(map);
  SLIM_RETURN_IF_ERROR(file->Parse(file->map_.bytes()));
  return file;
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBuffer(std::span<const uint8_t> bytes,
                                                                       std::string name) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = std::move(name);
  SLIM_RETURN_IF_ERROR(file->Parse(bytes));
  return file;
}

SafetensorsFile::~SafetensorsFile() = default;

const TensorInfo* SafetensorsFile::FindTensor(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsFile::ReadF32(const TensorInfo& t, float* out) const {
  const gguf::TensorType gt = t.dtype == DType::kF32   ? gguf::TensorType::kF32
                              : t.dtype == DType::kF16 ? gguf::TensorType::kF16
                                                       : gguf::TensorType::kBF16;
  const int64_t n = static_cast<int64_t>(t.n_elements);
  Status s = gguf::DequantizeRow(gt, t.data, out, n);
  if (!s.ok()) return s.WithPrefix(path_ + ": tensor " + Quote(t.name));
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(out[i])) {
      return InvalidArgumentError(path_ + ": tensor " + Quote(t.name) + " holds a non-finite value at element " +
                                  std::to_string(i));
    }
  }
  return OkStatus();
}

}  // namespace slim::safetensors
