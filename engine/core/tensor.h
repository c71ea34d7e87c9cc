// A small 2-D tensor view (data, dtype, device, rows, cols, row stride) that backends assert on,
// and Buffer, an owning allocation released through its backend's deleter.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>

namespace slim {

// kQuant: rows of GGUF quantization blocks (ggml type in TensorView::quant_type); its stride is
// in bytes and its cols count elements.
enum class DType { kF32, kBF16, kF16, kI32, kQuant };
enum class Device { kCpu, kCuda };

inline size_t DTypeBytes(DType t) {
  return t == DType::kBF16 || t == DType::kF16 ? 2 : t == DType::kQuant ? 1 : 4;
}
const char* DTypeName(DType t);
const char* DeviceName(Device d);

// Row-major view: element (r, c) lives at data + (r * stride + c) * DTypeBytes(dtype).
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Device device = Device::kCpu;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;  // elements between consecutive rows (>= cols); bytes for kQuant
  uint32_t quant_type = 0;  // ggml type of kQuant views

  template <typename T>
  T* as() const { return static_cast<T*>(data); }
  bool contiguous() const { return stride == cols; }
  int64_t numel() const { return rows * cols; }
  // Rows [begin, begin + n).
  TensorView Rows(int64_t begin, int64_t n) const {
    assert(begin >= 0 && n >= 0 && begin + n <= rows);
    TensorView v = *this;
    v.data = static_cast<char*>(data) + static_cast<size_t>(begin * stride) * DTypeBytes(dtype);
    v.rows = n;
    return v;
  }
  // Columns [begin, begin + n) of every row (a strided view).
  TensorView Cols(int64_t begin, int64_t n) const {
    assert(begin >= 0 && n >= 0 && begin + n <= cols);
    TensorView v = *this;
    v.data = static_cast<char*>(data) + static_cast<size_t>(begin) * DTypeBytes(dtype);
    v.cols = n;
    return v;
  }
};

// Owns one allocation; move-only.
class Buffer {
 public:
  Buffer() = default;
  Buffer(TensorView view, std::function<void(void*)> release)
      : view_(view), release_(std::move(release)) {}
  Buffer(Buffer&& o) noexcept : view_(o.view_), release_(std::move(o.release_)) { o.view_ = {}; o.release_ = nullptr; }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      Reset();
      view_ = o.view_;
      release_ = std::move(o.release_);
      o.view_ = {};
      o.release_ = nullptr;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { Reset(); }

  const TensorView& view() const { return view_; }
  TensorView Rows(int64_t begin, int64_t n) const { return view_.Rows(begin, n); }
  bool empty() const { return view_.data == nullptr; }

 private:
  void Reset() {
    if (release_ && view_.data) release_(view_.data);
    view_ = {};
    release_ = nullptr;
  }
  TensorView view_;
  std::function<void(void*)> release_;
};

}  // namespace slim
