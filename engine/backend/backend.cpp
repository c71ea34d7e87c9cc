// Backend factory: CPU always, CUDA when compiled in.
#include "engine/backend/backend.h"

#include <algorithm>

#include "engine/pruning/decode_selection.h"

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

Status Backend::KeyUnitMeans(const kv::KvStore& kv, const kv::LayerTable& table, const AttnShape& shape,
                             int32_t n_tokens, int unit_tokens, TensorView out) {
  const int bt = kv.layout().block_tokens, kv_dim = shape.n_kv_heads * shape.head_dim;
  if (unit_tokens <= 0 || bt % unit_tokens != 0)
    return InvalidArgumentError("KeyUnitMeans: the unit must divide the block");
  const int64_t n_units = (int64_t{n_tokens} + unit_tokens - 1) / unit_tokens;
  if (out.rows != n_units || out.cols != kv_dim)
    return InvalidArgumentError("KeyUnitMeans: out must be [n_units, kv_dim]");
  std::vector<float> keys;
  SLIM_RETURN_IF_ERROR(HostKeys(kv, table, shape, n_tokens, &keys).WithPrefix("KeyUnitMeans"));
  const std::vector<float> means = UnitMeanKeys(keys, n_tokens, kv_dim, unit_tokens);
  return Upload(means.data(), out);
}

Status Backend::BeginScoreBlocks(int slot, TensorView q, TensorView k, const AttnShape& shape, int32_t row_begin,
                                 int32_t n_rows, int block_tokens, int unit_tokens, int query_window, bool attention) {
  if (slot < 0 || slot > 4096) return InvalidArgumentError("BeginScoreBlocks: slot out of range");
  if (begun_scores_.size() <= static_cast<size_t>(slot)) begun_scores_.resize(static_cast<size_t>(slot) + 1);
  std::optional<std::vector<float>>& out = begun_scores_[static_cast<size_t>(slot)];
  out.reset();
  std::vector<float> scores;
  SLIM_RETURN_IF_ERROR(
      ScoreBlocks(q, k, shape, row_begin, n_rows, block_tokens, unit_tokens, query_window, attention, &scores));
  out = std::move(scores);
  return OkStatus();
}

Status Backend::EndScoreBlocks(int slot, std::vector<float>* block_scores) {
  if (slot < 0 || static_cast<size_t>(slot) >= begun_scores_.size() || !begun_scores_[static_cast<size_t>(slot)]) {
    return FailedPreconditionError("EndScoreBlocks: nothing begun in slot " + std::to_string(slot));
  }
  *block_scores = std::move(*begun_scores_[static_cast<size_t>(slot)]);
  begun_scores_[static_cast<size_t>(slot)].reset();
  return OkStatus();
}

Status Backend::HostKeys(const kv::KvStore& kv, const kv::LayerTable& table, const AttnShape& shape, int32_t n_tokens,
                         std::vector<float>* keys_out) {
  const kv::KvLayout& L = kv.layout();
  const int hd = shape.head_dim, kvh = shape.n_kv_heads, kv_dim = kvh * hd, bt = L.block_tokens;
  const int64_t n_blocks = (int64_t{n_tokens} + bt - 1) / bt;
  if (n_tokens < 0 || static_cast<int64_t>(table.blocks.size()) < n_blocks) {
    return InvalidArgumentError("the table holds fewer than n_tokens tokens");
  }
  // K of KV head g: rows [g * block_tokens, (g + 1) * block_tokens) of head_dim at the block's start.
  std::vector<float> block(static_cast<size_t>(kvh) * bt * hd);
  std::vector<float>& keys = *keys_out;
  keys.assign(static_cast<size_t>(n_tokens) * kv_dim, 0.0f);
  for (int64_t b = 0; b < n_blocks; ++b) {
    TensorView v;
    v.data = kv.Data(table.blocks[static_cast<size_t>(b)]);
    v.dtype = kv_dtype();
    v.device = device();
    v.rows = int64_t{kvh} * bt;
    v.cols = hd;
    v.stride = hd;
    SLIM_RETURN_IF_ERROR(Download(v, block.data()));
    const int64_t rows = std::min<int64_t>(bt, n_tokens - b * bt);
    for (int g = 0; g < kvh; ++g) {
      for (int64_t r = 0; r < rows; ++r) {
        std::copy_n(&block[static_cast<size_t>((int64_t{g} * bt + r) * hd)], hd,
                    &keys[static_cast<size_t>((b * bt + r) * kv_dim + g * hd)]);
      }
    }
  }
  return OkStatus();
}

Status Backend::SummarizeLogits(TensorView logits, std::span<const SummaryRequest> requests,
                                std::vector<LogitsSummary>* out) {
  std::vector<float> host(static_cast<size_t>(logits.rows * logits.cols));
  SLIM_RETURN_IF_ERROR(Download(logits, host.data()));
  SummaryScratch scratch;
  return SummarizeRows(host.data(), logits.rows, logits.cols, logits.cols, requests, &scratch, out);
}

}  // namespace slim
