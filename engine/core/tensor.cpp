// Names of dtypes and devices.
#include "engine/core/tensor.h"

namespace slim {

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kI32: return "i32";
    case DType::kQuant: return "quant";
  }
  return "?";
}

const char* DeviceName(Device d) { return d == Device::kCuda ? "cuda" : "cpu"; }

}  // namespace slim
