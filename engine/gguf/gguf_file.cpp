// GGUF v2/v3 parser: a bounds-checked little-endian reader over the mapped bytes, metadata and
// tensor-info parsing, data-section layout checks, and the typed metadata getters.
// Every malformed input is an InvalidArgument naming the file and the problem.
#include "engine/gguf/gguf_file.h"


#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>

#include "engine/gguf/quant.h"

namespace slim::gguf {
namespace {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint64_t kMaxKeyLength = 65535;
constexpr uint64_t kMaxTensorNameLength = 65535;
constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 4;  // an array of arrays of ... at most this many levels deep
// Array elements in the whole file. Each costs sizeof(Value) (~48 bytes) in memory, so this caps
// metadata memory near 800 MB however large the file; real vocabularies use well under 1M.
constexpr uint64_t kMaxArrayElements = uint64_t{1} << 24;

// Smallest encoding of one value of type `t` (used to bound counts by the remaining bytes).
uint64_t MinEncodedSize(ValueType t) {
  switch (t) {
    case ValueType::kUint8: case ValueType::kInt8: case ValueType::kBool: return 1;
    case ValueType::kUint16: case ValueType::kInt16: return 2;
    case ValueType::kUint32: case ValueType::kInt32: case ValueType::kFloat32: return 4;
    case ValueType::kUint64: case ValueType::kInt64: case ValueType::kFloat64: return 8;
    case ValueType::kString: return 8;          // length only
    case ValueType::kArray: return 4 + 8;       // element type + count
  }
  return 1;
}

bool IsKnownValueType(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::kFloat64); }

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    int len;
    uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (s.size() - i < static_cast<size_t>(len)) return false;
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong encodings, surrogates and code points past U+10FFFF are invalid.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += len;
  }
  return true;
}

// Printable form of a possibly hostile name for error messages: at most 64 bytes, control
// characters (and every non-ASCII byte when the name is not valid UTF-8) escaped as \xNN.
std::string Quote(std::string_view s) {
  std::string out = "'";
  const size_t n = s.size() < 64 ? s.size() : 64;
  const bool utf8 = IsValidUtf8(s);
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F || (c >= 0x80 && !utf8)) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > n) out += "...";
  out += "'";
  return out;
}

// Bounds-checked little-endian cursor over the file bytes. Errors name the file, what was
// being read and where.
class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, const std::string& file) : bytes_(bytes), file_(file) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  Status Error(const std::string& what) const { return InvalidArgumentError(file_ + ": " + what); }

  template <typename T>
  Status Read(T* out, std::string_view what) {
    if (remaining() < sizeof(T)) return Truncated(what, sizeof(T));
    std::memcpy(out, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return OkStatus();
  }

  // A length-prefixed string: uint64 length then that many bytes. `max_len` bounds it further.
  Status ReadString(std::string* out, std::string_view what, uint64_t max_len) {
    uint64_t len = 0;
    SLIM_RETURN_IF_ERROR(Read(&len, what));
    if (len > max_len) {
      return Error(std::string(what) + " length " + std::to_string(len) + " exceeds the limit of " +
                   std::to_string(max_len));
    }
    if (len > remaining()) {
      return Error("truncated: " + std::string(what) + " has length " + std::to_string(len) +
                   " but only " + std::to_string(remaining()) + " bytes remain at offset " +
                   std::to_string(pos_));
    }
    out->assign(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return OkStatus();
  }

 private:
  Status Truncated(std::string_view what, size_t need) const {
    return Error("truncated: reading " + std::string(what) + " at offset " + std::to_string(pos_) +
                 " needs " + std::to_string(need) + " bytes, only " + std::to_string(remaining()) +
                 " remain (file size " + std::to_string(bytes_.size()) + ")");
  }

  std::span<const uint8_t> bytes_;
  const std::string& file_;
  uint64_t pos_ = 0;
};

// Reads a fixed-size scalar stored as Raw and widens it to Stored.
template <typename Raw, typename Stored>
Status ReadScalar(Reader& r, const std::string& what, Value* out) {
  Raw v{};
  SLIM_RETURN_IF_ERROR(r.Read(&v, what));
  out->v = static_cast<Stored>(v);
  return OkStatus();
}

// Reads one metadata value of type `type`; `what` names it for errors. `array_budget` counts
// down the array elements still allowed in this file.
Status ReadValue(Reader& r, ValueType type, int depth, const std::string& what,
                 uint64_t* array_budget, Value* out) {
  out->type = type;
  switch (type) {
    case ValueType::kUint8: return ReadScalar<uint8_t, uint64_t>(r, what, out);
    case ValueType::kUint16: return ReadScalar<uint16_t, uint64_t>(r, what, out);
    case ValueType::kUint32: return ReadScalar<uint32_t, uint64_t>(r, what, out);
    case ValueType::kUint64: return ReadScalar<uint64_t, uint64_t>(r, what, out);
    case ValueType::kInt8: return ReadScalar<int8_t, int64_t>(r, what, out);
    case ValueType::kInt16: return ReadScalar<int16_t, int64_t>(r, what, out);
    case ValueType::kInt32: return ReadScalar<int32_t, int64_t>(r, what, out);
    case ValueType::kInt64: return ReadScalar<int64_t, int64_t>(r, what, out);
    case ValueType::kFloat32: return ReadScalar<float, double>(r, what, out);
    case ValueType::kFloat64: return ReadScalar<double, double>(r, what, out);
    case ValueType::kBool: {
      uint8_t v = 0;
      SLIM_RETURN_IF_ERROR(r.Read(&v, what));
      if (v > 1) return r.Error(what + ": bool value " + std::to_string(v) + " is neither 0 nor 1");
      out->v = v != 0;
      return OkStatus();
    }
    case ValueType::kString: {
      std::string s;
      SLIM_RETURN_IF_ERROR(r.ReadString(&s, what, std::numeric_limits<uint64_t>::max()));
      out->v = std::move(s);
      return OkStatus();
    }
    case ValueType::kArray: {
      if (depth >= kMaxArrayDepth) {
        return r.Error(what + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth) +
                       " levels");
      }
      uint32_t elem_raw = 0;
      uint64_t count = 0;
      SLIM_RETURN_IF_ERROR(r.Read(&elem_raw, what + " element type"));
      if (!IsKnownValueType(elem_raw)) {
        return r.Error(what + ": unknown array element type " + std::to_string(elem_raw));
      }
      SLIM_RETURN_IF_ERROR(r.Read(&count, what + " element count"));
      const auto elem = static_cast<ValueType>(elem_raw);
      // Check the count against what the rest of the file could hold before reserving.
      if (count > r.remaining() / MinEncodedSize(elem)) {
        return r.Error(what + ": array of " + std::to_string(count) + " " + ValueTypeName(elem) +
                       " values cannot fit in the remaining " + std::to_string(r.remaining()) +
                       " bytes");
      }
      if (count > *array_budget) {
        return r.Error(what + ": array of " + std::to_string(count) + " elements exceeds the limit of " +
                       std::to_string(kMaxArrayElements) + " array elements per file");
      }
      *array_budget -= count;
      Array arr;
      arr.elem_type = elem;
      arr.items.resize(count);
      for (uint64_t i = 0; i < count; ++i) {
        SLIM_RETURN_IF_ERROR(ReadValue(r, elem, depth + 1, what, array_budget, &arr.items[i]));
      }
      out->v = std::move(arr);
      return OkStatus();
    }
  }
  return r.Error(what + ": unknown value type " + std::to_string(static_cast<uint32_t>(type)));
}

// Integer value of `v` when it is of an integer type and fits T.
template <typename T>
bool IntegerAs(const Value& v, T* out) {
  if (const auto* u = std::get_if<uint64_t>(&v.v)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return false;
    *out = static_cast<T>(*u);
    return true;
  }
  if (const auto* i = std::get_if<int64_t>(&v.v)) {
    if (*i < 0 && !std::numeric_limits<T>::is_signed) return false;
    *out = static_cast<T>(*i);
    return true;
  }
  return false;
}

bool IsIntegerType(ValueType t) {
  switch (t) {
    case ValueType::kUint8: case ValueType::kInt8: case ValueType::kUint16: case ValueType::kInt16:
    case ValueType::kUint32: case ValueType::kInt32: case ValueType::kUint64: case ValueType::kInt64:
      return true;
    default:
      return false;
  }
}

std::string DescribeValue(const Value& v) {
  if (v.type == ValueType::kArray) {
    const auto& a = std::get<Array>(v.v);
    return std::string("array of ") + std::to_string(a.items.size()) + " " + ValueTypeName(a.elem_type);
  }
  std::string s = ValueTypeName(v.type);
  if (const auto* u = std::get_if<uint64_t>(&v.v)) s += " " + std::to_string(*u);
  if (const auto* i = std::get_if<int64_t>(&v.v)) s += " " + std::to_string(*i);
  return s;
}

}  // namespace

const char* ValueTypeName(ValueType t) {
  switch (t) {
    case ValueType::kUint8: return "uint8";
    case ValueType::kInt8: return "int8";
    case ValueType::kUint16: return "uint16";
    case ValueType::kInt16: return "int16";
    case ValueType::kUint32: return "uint32";
    case ValueType::kInt32: return "int32";
    case ValueType::kFloat32: return "float32";
    case ValueType::kBool: return "bool";
    case ValueType::kString: return "string";
    case ValueType::kArray: return "array";
    case ValueType::kUint64: return "uint64";
    case ValueType::kInt64: return "int64";
    case ValueType::kFloat64: return "float64";
  }
  return "unknown";
}

StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  SLIM_ASSIGN_OR_RETURN(MappedFile map, MappedFile::Open(path));
  if (map.bytes().empty()) return InvalidArgumentError(path + ": file is empty (expected a GGUF file)");
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  file->map_ = std::move(map);
  SLIM_RETURN_IF_ERROR(file->Parse(file->map_.bytes()));
  return file;
}

StatusOr<std::unique_ptr<GgufFile>> GgufFile::FromBuffer(std::span<const uint8_t> bytes,
                                                         std::string name) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = std::move(name);
  SLIM_RETURN_IF_ERROR(file->Parse(bytes));
  return file;
}

GgufFile::~GgufFile() = default;

namespace {

// The counts the header announces, checked against what the remaining bytes could hold.
struct Header {
  uint64_t n_tensors = 0;
  uint64_t n_kv = 0;
};

// Each kv takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least
// 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset) bytes.
constexpr uint64_t kMinKvBytes = 13, kMinTensorInfoBytes = 32;

// Magic, version and the two counts.
Status ReadHeader(Reader& r, uint32_t* version, Header* h) {
  uint32_t magic = 0;
  SLIM_RETURN_IF_ERROR(r.Read(&magic, "magic"));
  if (magic != kMagic) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%08x", magic);
    return r.Error(std::string("bad magic ") + hex + ": not a GGUF file (expected 'GGUF')");
  }
  SLIM_RETURN_IF_ERROR(r.Read(version, "version"));
  if (*version != 2 && *version != 3) {
    const uint32_t swapped = __builtin_bswap32(*version);
    if (swapped == 2 || swapped == 3) {
      return r.Error("unsupported GGUF version: file looks big-endian (version " +
                     std::to_string(swapped) + " byte-swapped); only little-endian is supported");
    }
    return r.Error("unsupported GGUF version " + std::to_string(*version) +
                   " (supported: 2 and 3)");
  }
  SLIM_RETURN_IF_ERROR(r.Read(&h->n_tensors, "tensor count"));
  SLIM_RETURN_IF_ERROR(r.Read(&h->n_kv, "metadata kv count"));
  if (h->n_kv > r.remaining() / kMinKvBytes) {
    return r.Error("metadata kv count " + std::to_string(h->n_kv) + " exceeds what the remaining " +
                   std::to_string(r.remaining()) + " bytes could hold");
  }
  if (h->n_tensors > r.remaining() / kMinTensorInfoBytes ||
      h->n_kv * kMinKvBytes + h->n_tensors * kMinTensorInfoBytes > r.remaining()) {
    return r.Error("tensor count " + std::to_string(h->n_tensors) + " exceeds what the remaining " +
                   std::to_string(r.remaining()) + " bytes could hold");
  }
  return OkStatus();
}

// `n_kv` key/value pairs, in file order, with an index by key.
Status ReadMetadata(Reader& r, uint64_t n_kv, std::vector<std::pair<std::string, Value>>* kv,
                    std::unordered_map<std::string, size_t>* index) {
  uint64_t array_budget = kMaxArrayElements;
  kv->reserve(n_kv);
  index->reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string idx = "metadata kv #" + std::to_string(i);
    std::string key;
    SLIM_RETURN_IF_ERROR(r.ReadString(&key, idx + " key", kMaxKeyLength));
    if (key.empty()) return r.Error(idx + " has an empty key");
    if (!IsValidUtf8(key)) return r.Error(idx + " key " + Quote(key) + " is not valid UTF-8");
    if (index->count(key) != 0) return r.Error("duplicate metadata key " + Quote(key));
    uint32_t type_raw = 0;
    SLIM_RETURN_IF_ERROR(r.Read(&type_raw, "type of key " + Quote(key)));
    if (!IsKnownValueType(type_raw)) {
      return r.Error("key " + Quote(key) + " has unknown value type " + std::to_string(type_raw));
    }
    Value value;
    SLIM_RETURN_IF_ERROR(
        ReadValue(r, static_cast<ValueType>(type_raw), 0, "key " + Quote(key), &array_budget, &value));
    index->emplace(key, kv->size());
    kv->emplace_back(std::move(key), std::move(value));
  }
  return OkStatus();
}

// general.alignment: a non-zero power of two, when present.
StatusOr<uint64_t> AlignmentOf(Reader& r, const Value* a) {
  if (a == nullptr) return kDefaultAlignment;
  uint64_t align = 0;
  if (!IsIntegerType(a->type) || !IntegerAs(*a, &align)) {
    return r.Error("key 'general.alignment' must be an unsigned integer, found " + DescribeValue(*a));
  }
  if (align == 0 || !std::has_single_bit(align)) {
    return r.Error("key 'general.alignment' = " + std::to_string(align) + " is not a non-zero power of two");
  }
  return align;
}

// `n_tensors` tensor infos: name, shape, type and aligned offset, with an index by name.
Status ReadTensorInfos(Reader& r, uint64_t n_tensors, uint64_t alignment, std::vector<TensorInfo>* tensors,
                       std::unordered_map<std::string, size_t>* index) {
  if (n_tensors > r.remaining() / kMinTensorInfoBytes) {
    return r.Error("tensor count " + std::to_string(n_tensors) + " exceeds what the remaining " +
                   std::to_string(r.remaining()) + " bytes could hold");
  }
  tensors->reserve(n_tensors);
  index->reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const std::string idx = "tensor info #" + std::to_string(i);
    TensorInfo t;
    SLIM_RETURN_IF_ERROR(r.ReadString(&t.name, idx + " name", kMaxTensorNameLength));
    if (t.name.empty()) return r.Error(idx + " has an empty name");
    if (index->count(t.name) != 0) return r.Error("duplicate tensor name " + Quote(t.name));
    const std::string tn = "tensor " + Quote(t.name);
    uint32_t n_dims = 0;
    SLIM_RETURN_IF_ERROR(r.Read(&n_dims, tn + " n_dims"));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return r.Error(tn + " has n_dims " + std::to_string(n_dims) + " (must be 1.." +
                     std::to_string(kMaxDims) + ")");
    }
    t.dims.resize(n_dims);
    int64_t n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = 0;
      SLIM_RETURN_IF_ERROR(r.Read(&dim, tn + " dims"));
      if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return r.Error(tn + " has dimension " + std::to_string(d) + " = " +
                       std::to_string(static_cast<int64_t>(dim)) + " (must be positive)");
      }
      t.dims[d] = static_cast<int64_t>(dim);
      if (__builtin_mul_overflow(n_elements, t.dims[d], &n_elements)) {
        return r.Error(tn + " element count overflows (dims too large)");
      }
    }
    t.n_elements = static_cast<uint64_t>(n_elements);
    uint32_t type_raw = 0;
    SLIM_RETURN_IF_ERROR(r.Read(&type_raw, tn + " type"));
    t.type = static_cast<TensorType>(type_raw);
    const int64_t block = BlockElements(t.type);
    if (block == 0 || BlockBytes(t.type) == 0) {
      return r.Error(tn + " has unknown or unsupported tensor type " + std::to_string(type_raw));
    }
    if (t.dims[0] % block != 0) {
      return r.Error(tn + " of type " + TensorTypeName(t.type) + " has row length " +
                     std::to_string(t.dims[0]) + ", not a multiple of the block size " +
                     std::to_string(block));
    }
    StatusOr<uint64_t> n_bytes = TensorBytes(t.type, t.n_elements);
    if (!n_bytes.ok()) return r.Error(tn + ": " + n_bytes.status().message());
    t.n_bytes = *n_bytes;
    SLIM_RETURN_IF_ERROR(r.Read(&t.offset, tn + " offset"));
    if (t.offset % alignment != 0) {
      return r.Error(tn + " data offset " + std::to_string(t.offset) +
                     " is not a multiple of the alignment " + std::to_string(alignment));
    }
    index->emplace(t.name, tensors->size());
    tensors->push_back(std::move(t));
  }
  return OkStatus();
}

// Points each tensor into the data section (which starts at the next multiple of the
// alignment): in order, not overlapping, inside the file.
Status PlaceTensorData(Reader& r, std::span<const uint8_t> bytes, uint64_t alignment,
                       std::vector<TensorInfo>* tensors) {
  const uint64_t size = bytes.size();
  uint64_t data_start = r.pos();
  if (data_start % alignment != 0) {
    const uint64_t pad = alignment - data_start % alignment;
    if (__builtin_add_overflow(data_start, pad, &data_start)) data_start = size + 1;
  }
  if (tensors->empty()) return OkStatus();  // nothing to place; trailing padding optional
  if (data_start > size) {
    return r.Error("data section would start at offset " + std::to_string(data_start) +
                   " (alignment " + std::to_string(alignment) + "), past the end of the file (size " +
                   std::to_string(size) + ")");
  }
  const uint64_t data_size = size - data_start;
  uint64_t prev_end = 0;
  const TensorInfo* prev = nullptr;
  for (TensorInfo& t : *tensors) {
    const std::string where = "tensor " + Quote(t.name) + " data [offset " +
                              std::to_string(t.offset) + ", " + std::to_string(t.n_bytes) + " bytes]";
    if (prev != nullptr && t.offset < prev->offset) {
      return r.Error(where + " is out of order: it starts before tensor " + Quote(prev->name) +
                     " at offset " + std::to_string(prev->offset));
    }
    if (t.offset < prev_end) {
      return r.Error(where + " overlaps tensor " + Quote(prev->name) + " which ends at offset " +
                     std::to_string(prev_end));
    }
    if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
      return r.Error(where + " runs past the end of the file (size " + std::to_string(size) +
                     ", data section starts at " + std::to_string(data_start) + ")");
    }
    t.data = bytes.data() + data_start + t.offset;
    prev_end = t.offset + t.n_bytes;
    prev = &t;
  }
  return OkStatus();
}

}  // namespace

Status GgufFile::Parse(std::span<const uint8_t> bytes) {
  Reader r(bytes, path_);
  if (bytes.empty()) return r.Error("file is empty (expected a GGUF file)");
  Header h;
  SLIM_RETURN_IF_ERROR(ReadHeader(r, &version_, &h));
  SLIM_RETURN_IF_ERROR(ReadMetadata(r, h.n_kv, &kv_, &kv_index_));
  SLIM_ASSIGN_OR_RETURN(alignment_, AlignmentOf(r, Find("general.alignment")));
  SLIM_RETURN_IF_ERROR(ReadTensorInfos(r, h.n_tensors, alignment_, &tensors_, &tensor_index_));
  return PlaceTensorData(r, bytes, alignment_, &tensors_);
}

const Value* GgufFile::Find(std::string_view key) const {
  auto it = kv_index_.find(std::string(key));
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const TensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

Status Missing(const std::string& file, std::string_view key) {
  return NotFoundError(file + ": metadata key '" + std::string(key) + "' not found");
}
Status WrongType(const std::string& file, std::string_view key, const Value& v,
                 std::string_view expected) {
  return InvalidArgumentError(file + ": metadata key '" + std::string(key) + "' is " +
                              DescribeValue(v) + ", expected " + std::string(expected));
}

}  // namespace

StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(path_, key);
  if (v->type != ValueType::kString) return WrongType(path_, key, *v, "a string");
  return std::get<std::string>(v->v);
}

StatusOr<uint64_t> GgufFile::GetUint(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(path_, key);
  uint64_t out = 0;
  if (!IsIntegerType(v->type) || !IntegerAs(*v, &out)) {
    return WrongType(path_, key, *v, "a non-negative integer");
  }
  return out;
}

StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(path_, key);
  int64_t out = 0;
  if (!IsIntegerType(v->type) || !IntegerAs(*v, &out)) {
    return WrongType(path_, key, *v, "an integer that fits int64");
  }
  return out;
}

StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(path_, key);
  if (const auto* d = std::get_if<double>(&v->v)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&v->v)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&v->v)) return static_cast<double>(*i);
  return WrongType(path_, key, *v, "a number");
}

StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(path_, key);
  if (v->type != ValueType::kBool) return WrongType(path_, key, *v, "a bool");
  return std::get<bool>(v->v);
}

StatusOr<std::vector<std::string>> GgufFile::GetStringArray(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(path_, key);
  const auto* a = std::get_if<Array>(&v->v);
  if (a == nullptr || a->elem_type != ValueType::kString) {
    return WrongType(path_, key, *v, "an array of strings");
  }
  std::vector<std::string> out;
  out.reserve(a->items.size());
  for (const Value& item : a->items) out.push_back(std::get<std::string>(item.v));
  return out;
}

StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(path_, key);
  const auto* a = std::get_if<Array>(&v->v);
  if (a == nullptr || !IsIntegerType(a->elem_type)) {
    return WrongType(path_, key, *v, "an array of integers");
  }
  std::vector<int64_t> out(a->items.size());
  for (size_t i = 0; i < a->items.size(); ++i) {
    if (!IntegerAs(a->items[i], &out[i])) {
      return InvalidArgumentError(path_ + ": metadata key '" + std::string(key) + "' element " +
                                  std::to_string(i) + " does not fit int64");
    }
  }
  return out;
}

StatusOr<std::vector<double>> GgufFile::GetFloatArray(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(path_, key);
  const auto* a = std::get_if<Array>(&v->v);
  const bool numeric = a != nullptr && (a->elem_type == ValueType::kFloat32 ||
                                        a->elem_type == ValueType::kFloat64 ||
                                        IsIntegerType(a->elem_type));
  if (!numeric) return WrongType(path_, key, *v, "an array of numbers");
  std::vector<double> out(a->items.size());
  for (size_t i = 0; i < a->items.size(); ++i) {
    const Value& item = a->items[i];
    if (const auto* d = std::get_if<double>(&item.v)) out[i] = *d;
    else if (const auto* u = std::get_if<uint64_t>(&item.v)) out[i] = static_cast<double>(*u);
    else if (const auto* s = std::get_if<int64_t>(&item.v)) out[i] = static_cast<double>(*s);
  }
  return out;
}

}  // namespace slim::gguf
