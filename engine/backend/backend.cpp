// Backend factory: CPU always, CUDA when compiled in.
#include "engine/backend/backend.h"

namespace slim {

namespace cpu { StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const BackendOptions& options); }
#ifdef SLIM_HAVE_CUDA
namespace cuda { StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const BackendOptions& options); }
#endif

StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options) {
  if (options.device == Device::kCpu) return cpu::CreateCpuBackend(options);
#ifdef SLIM_HAVE_CUDA
  return cuda::CreateCudaBackend(options);
#else
  return UnavailableError("this build has no CUDA backend (configure with SLIM_WITH_CUDA=ON)");
#endif
}

StatusOr<KvCache> ParseKvCache(std::string_view s) {
  if (s == "auto") return KvCache::kAuto;
  if (s == "f32") return KvCache::kF32;
  if (s == "f16") return KvCache::kF16;
  if (s == "bf16") return KvCache::kBf16;
  return InvalidArgumentError("KV cache type '" + std::string(s) + "' (known: auto, f32, f16, bf16)");
}

StatusOr<AttentionKernel> ParseAttentionKernel(std::string_view s) {
  if (s == "auto") return AttentionKernel::kAuto;
  if (s == "mma") return AttentionKernel::kMma;
  if (s == "wgmma") return AttentionKernel::kWgmma;
  return InvalidArgumentError("cuda attention kernel '" + std::string(s) + "' (known: auto, mma, wgmma)");
}

StatusOr<Toggle> ParseToggle(std::string_view what, std::string_view s) {
  if (s == "auto") return Toggle::kAuto;
  if (s == "on") return Toggle::kOn;
  if (s == "off") return Toggle::kOff;
  return InvalidArgumentError(std::string(what) + " '" + std::string(s) + "' (known: auto, on, off)");
}

std::string_view KvCacheName(KvCache k) {
  switch (k) {
    case KvCache::kAuto: return "auto";
    case KvCache::kF32: return "f32";
    case KvCache::kF16: return "f16";
    case KvCache::kBf16: return "bf16";
  }
  return "?";
}

void Backend::Mlp(TensorView x, const MlpWeights& w, const MlpScratch& scratch, TensorView out) {
  MatMulQ(x, w.gate_up, w.gate_up_q, scratch.gate_up);
  SwiGlu(scratch.gate_up, scratch.act);
  MatMulQ(scratch.act, w.down, w.down_q, out);
}

Status Backend::SummarizeLogits(TensorView logits, std::span<const SummaryRequest> requests,
                                std::vector<LogitsSummary>* out) {
  std::vector<float> host(static_cast<size_t>(logits.rows * logits.cols));
  SLIM_RETURN_IF_ERROR(Download(logits, host.data()));
  SummaryScratch scratch;
  return SummarizeRows(host.data(), logits.rows, logits.cols, logits.cols, requests, &scratch, out);
}

}  // namespace slim
