// Test helper: builds GGUF files in memory (any version, alignment, value type, tensor layout)
// so the parser and the config reader can be tested without fixture files. Header-only.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "engine/gguf/gguf_file.h"
#include "engine/gguf/quant.h"

namespace slim::gguf::testing {

// Little-endian byte sink.
class Bytes {
 public:
  template <typename T>
  Bytes& Put(T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out_.insert(out_.end(), b, b + sizeof(T));
    return *this;
  }
  Bytes& Str(const std::string& s) {
    Put<uint64_t>(s.size());
    out_.insert(out_.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& Raw(const std::vector<uint8_t>& b) {
    out_.insert(out_.end(), b.begin(), b.end());
    return *this;
  }
  Bytes& PadTo(uint64_t alignment) {
    while (out_.size() % alignment != 0) out_.push_back(0);
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return out_; }
  std::vector<uint8_t> Take() { return std::move(out_); }

 private:
  std::vector<uint8_t> out_;
};

// A GGUF file under construction: key/values in order, tensors laid out in order at aligned
// offsets (no padding after the last tensor, so every strict prefix of the file is invalid).
class GgufBuilder {
 public:
  // Encoded value payloads (without the type tag), for use in Kv() and arrays.
  template <typename T>
  static std::vector<uint8_t> Scalar(T v) { Bytes b; b.Put(v); return b.Take(); }
  static std::vector<uint8_t> String(const std::string& s) { Bytes b; b.Str(s); return b.Take(); }
  static std::vector<uint8_t> Array(ValueType elem, const std::vector<std::vector<uint8_t>>& items) {
    Bytes b;
    b.Put<uint32_t>(static_cast<uint32_t>(elem)).Put<uint64_t>(items.size());
    for (const auto& it : items) b.Raw(it);
    return b.Take();
  }
  static std::vector<uint8_t> StringArray(const std::vector<std::string>& items) {
    std::vector<std::vector<uint8_t>> enc;
    for (const auto& s : items) enc.push_back(String(s));
    return Array(ValueType::kString, enc);
  }

  GgufBuilder& Kv(const std::string& key, ValueType type, std::vector<uint8_t> payload) {
    kvs_.push_back({key, type, std::move(payload)});
    return *this;
  }
  // Replaces the value of `key` in place (appends when absent).
  GgufBuilder& Set(const std::string& key, ValueType type, std::vector<uint8_t> payload) {
    for (auto& kv : kvs_) {
      if (kv.key == key) {
        kv.type = type;
        kv.payload = std::move(payload);
        return *this;
      }
    }
    return Kv(key, type, std::move(payload));
  }
  GgufBuilder& Remove(const std::string& key) {
    std::erase_if(kvs_, [&](const KvEntry& kv) { return kv.key == key; });
    return *this;
  }
  GgufBuilder& U32(const std::string& key, uint32_t v) { return Kv(key, ValueType::kUint32, Scalar(v)); }
  GgufBuilder& I32(const std::string& key, int32_t v) { return Kv(key, ValueType::kInt32, Scalar(v)); }
  GgufBuilder& U64(const std::string& key, uint64_t v) { return Kv(key, ValueType::kUint64, Scalar(v)); }
  GgufBuilder& F32(const std::string& key, float v) { return Kv(key, ValueType::kFloat32, Scalar(v)); }
  GgufBuilder& Bool(const std::string& key, bool v) {
    return Kv(key, ValueType::kBool, Scalar<uint8_t>(v ? 1 : 0));
  }
  GgufBuilder& Str(const std::string& key, const std::string& v) {
    return Kv(key, ValueType::kString, String(v));
  }

  // A tensor with the given ggml dims (dims[0] = row length) and raw data; the data size must
  // match the type. Empty `data` gets zero bytes of the right size.
  GgufBuilder& Tensor(const std::string& name, std::vector<int64_t> dims, TensorType type,
                      std::vector<uint8_t> data = {}) {
    uint64_t n = 1;
    for (int64_t d : dims) n *= static_cast<uint64_t>(d);
    const uint64_t size = n / static_cast<uint64_t>(BlockElements(type)) * BlockBytes(type);
    if (data.empty()) data.assign(size, 0);
    tensors_.push_back({name, std::move(dims), type, std::move(data)});
    return *this;
  }

  std::vector<uint8_t> Build(uint32_t version = 3, uint64_t alignment = 32) const {
    Bytes b;
    b.Put<uint32_t>(0x46554747).Put<uint32_t>(version);
    b.Put<uint64_t>(tensors_.size()).Put<uint64_t>(kvs_.size());
    for (const auto& kv : kvs_) {
      b.Str(kv.key).Put<uint32_t>(static_cast<uint32_t>(kv.type)).Raw(kv.payload);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
      b.Str(t.name).Put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
      for (int64_t d : t.dims) b.Put<uint64_t>(static_cast<uint64_t>(d));
      b.Put<uint32_t>(static_cast<uint32_t>(t.type)).Put<uint64_t>(offset);
      offset += t.data.size();
      offset = (offset + alignment - 1) / alignment * alignment;
    }
    if (!tensors_.empty()) b.PadTo(alignment);
    for (size_t i = 0; i < tensors_.size(); ++i) {
      b.Raw(tensors_[i].data);
      if (i + 1 < tensors_.size()) b.PadTo(alignment);
    }
    return b.Take();
  }

 private:
  struct KvEntry {
    std::string key;
    ValueType type;
    std::vector<uint8_t> payload;
  };
  struct TensorEntry {
    std::string name;
    std::vector<int64_t> dims;
    TensorType type;
    std::vector<uint8_t> data;
  };
  std::vector<KvEntry> kvs_;
  std::vector<TensorEntry> tensors_;
};

// Metadata of a small valid llama (d_model 64, 4 heads of 16, 2 kv heads, ff 128, vocab 32,
// 2 layers), to be modified by tests.
inline GgufBuilder TinyLlama() {
  GgufBuilder b;
  b.Str("general.architecture", "llama")
      .Str("general.name", "tiny")
      .U32("llama.block_count", 2)
      .U32("llama.context_length", 512)
      .U32("llama.embedding_length", 64)
      .U32("llama.feed_forward_length", 128)
      .U32("llama.attention.head_count", 4)
      .U32("llama.attention.head_count_kv", 2)
      .F32("llama.rope.freq_base", 10000.0f)
      .F32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
      .U32("llama.vocab_size", 32);
  b.Tensor("token_embd.weight", {64, 32}, TensorType::kQ8_0);
  return b;
}

}  // namespace slim::gguf::testing
