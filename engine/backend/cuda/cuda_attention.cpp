// CudaBackend, KV and attention side: staging of the paged batch images, KV writes (with and
// without fused RoPE), attention dispatch (decode or flash kernel per sequence), block scores
// for pruning and the logits summaries.
#include "engine/backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "engine/backend/cuda/block_scores.h"
#include "engine/backend/cuda/convert.h"
#include "engine/backend/cuda/cuda_backend_internal.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/decode_attention.h"
#include "engine/backend/cuda/embed_gather.h"
#include "engine/backend/cuda/flash_attention.h"
#include "engine/backend/cuda/gemv.h"
#include "engine/backend/cuda/key_summary.h"
#include "engine/backend/cuda/kv_write.h"
#include "engine/backend/cuda/mapped_copy.h"
#include "engine/backend/cuda/paged_kv.h"
#include "engine/backend/cuda/rms_norm.h"
#include "engine/backend/cuda/rope.h"
#include "engine/backend/cuda/sample_topk.h"
#include "engine/backend/cuda/stream_graphs.h"
#include "engine/backend/cuda/swiglu.h"

namespace slim::cuda {

// ---- KV and attention ----------------------------------------------------------------------

namespace {

// Host image of a batch's PagedSeq array followed by the block ids each sequence needs.
void BuildBatch(const kv::KvStore& kv, std::span<const AttnSeq> seqs, std::vector<int32_t>* out) {
  const int bt = kv.layout().block_tokens;
  out->assign(seqs.size() * 4, 0);
  for (size_t i = 0; i < seqs.size(); ++i) {
    const AttnSeq& s = seqs[i];
    const size_t need = static_cast<size_t>((s.n_past + s.n_rows + bt - 1) / bt);
    PagedSeq ps;
    ps.row_begin = s.row_begin;
    ps.n_rows = s.n_rows;
    ps.n_past = s.n_past;
    ps.table_offset = static_cast<int32_t>(out->size() - seqs.size() * 4);
    std::memcpy(out->data() + i * 4, &ps, sizeof ps);
    out->insert(out->end(), s.table->blocks.begin(), s.table->blocks.begin() + static_cast<std::ptrdiff_t>(need));
  }
}

PagedKv MakePagedKv(const kv::KvStore& kv, const AttnShape& shape, const void* dev_batch, int n_seqs) {
  const kv::KvLayout& L = kv.layout();
  const kv::GpuView view = kv.View();
  PagedKv p;
  p.arena = view.base;
  p.n_blocks = view.n_blocks;
  p.block_bytes = static_cast<int64_t>(view.block_bytes);
  p.head_bytes = static_cast<int64_t>(view.head_bytes);
  p.n_kv_heads = shape.n_kv_heads;
  p.head_dim = shape.head_dim;
  p.block_tokens = L.block_tokens;
  p.n_seqs = n_seqs;
  p.seqs = static_cast<const PagedSeq*>(dev_batch);
  p.tables = static_cast<const int32_t*>(dev_batch) + 4 * n_seqs;
  return p;
}

Status CheckKv(const kv::KvStore& kv, const AttnShape& shape) {
  const kv::KvLayout& L = kv.layout();
  if (L.elem_bytes != 2 || L.n_kv_heads != shape.n_kv_heads || L.head_dim != shape.head_dim) {
    return InvalidArgumentError("cuda KV: the store's layout must be bf16 with the model's KV heads and head size");
  }
  return OkStatus();
}

}  // namespace

CudaBackend::AttnStaging CudaBackend::BuildAttentionImage(const kv::KvStore& kv, std::span<const AttnSeq> seqs,
                                                         const AttnShape& shape, std::vector<int32_t>* image) {
  // One buffer: [PagedSeq x n][block tables][flash tiles][decode items].
  const int group = shape.n_heads / shape.n_kv_heads;
  const bool flash_ok = FlashSupports(shape.head_dim, kv.layout().block_tokens);
  const int n = static_cast<int>(seqs.size());
  AttnStaging st;
  BuildBatch(kv, seqs, image);
  struct Work {
    int64_t cost;
    FlashTile t;
  };
  std::vector<Work> tiles;
  std::vector<DecodeItem> items;
  for (int i = 0; i < n; ++i) {
    const AttnSeq& s = seqs[static_cast<size_t>(i)];
    if (s.n_rows <= 0) continue;
    if (flash_ok && (s.n_rows > kDecodeMaxRows || !DecodeSupports(shape.head_dim, group))) {
      for (int r0 = 0; r0 < s.n_rows; r0 += kFlashRows) {
        tiles.push_back({int64_t{s.n_past} + r0 + std::min(kFlashRows, s.n_rows - r0), FlashTile{i, r0}});
      }
    } else {
      for (int r = 0; r < s.n_rows; ++r) items.push_back(DecodeItem{i, r});
      st.max_decode_keys = std::max(st.max_decode_keys, s.n_past + s.n_rows);
    }
  }
  // Heaviest query tiles first: the causal tail of a long prompt is the critical path.
  std::stable_sort(tiles.begin(), tiles.end(), [](const Work& a, const Work& b) { return a.cost > b.cost; });
  st.tiles_at = image->size();
  for (const Work& w : tiles) {
    image->push_back(w.t.seq);
    image->push_back(w.t.row0);
  }
  st.items_at = image->size();
  for (const DecodeItem& it : items) {
    image->push_back(it.seq);
    image->push_back(it.row);
  }
  st.n_tiles = static_cast<int>(tiles.size());
  st.n_items = static_cast<int>(items.size());
  return st;
}

StatusOr<CudaBackend::AttnStaging> CudaBackend::StageAttention(const kv::KvStore& kv, std::span<const AttnSeq> seqs,
                                                               const AttnShape& shape) {
  AttnStaging st = BuildAttentionImage(kv, seqs, shape, &host_i32_);
  for (const Prepared& p : prepared_) {
    if (p.lap == stager_.lap() && p.image == host_i32_) {
      st.device = p.device;
      return st;
    }
  }
  SLIM_ASSIGN_OR_RETURN(st.device, stager_.StageCached(kSlotAttn, host_i32_.data(), host_i32_.size() * sizeof(int32_t)));
  return st;
}

void CudaBackend::PrepareLayers(const kv::KvStore& kv, std::span<const std::vector<AttnSeq>> layers,
                                const AttnShape& shape) {
  prepared_.resize(layers.size());
  std::vector<int32_t> all;
  std::vector<size_t> at;
  for (size_t l = 0; l < layers.size(); ++l) {
    (void)BuildAttentionImage(kv, layers[l], shape, &prepared_[l].image);
    at.push_back(all.size());
    all.insert(all.end(), prepared_[l].image.begin(), prepared_[l].image.end());
    all.resize((all.size() + 3) / 4 * 4);  // 16-byte aligned starts
  }
  auto dev = stager_.Stage(all.data(), all.size() * sizeof(int32_t));
  if (!dev.ok()) {  // not fatal: the ops stage their own copies
    prepared_.clear();
    return;
  }
  for (size_t l = 0; l < layers.size(); ++l) {
    prepared_[l].device = static_cast<const int32_t*>(*dev) + at[l];
    prepared_[l].lap = stager_.lap();
  }
}

void CudaBackend::WriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape, TensorView k,
                          TensorView v) {
  OpScope scope(this, "WriteKv");
  Note(DoWriteKv(kv, seqs, shape, k, v));
}

Status CudaBackend::DoWriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                              TensorView k, TensorView v) {
  SLIM_RETURN_IF_ERROR(CheckKv(kv, shape));
  if (k.dtype != DType::kBF16 || v.dtype != DType::kBF16) return InvalidArgumentError("cuda WriteKv: k/v must be bf16");
  if (seqs.empty()) return OkStatus();
  // The staging Attention builds for the same batch: its leading PagedSeq array and tables are
  // what this kernel reads, and the Attention call that follows finds the copy in the cache.
  SLIM_ASSIGN_OR_RETURN(AttnStaging st, StageAttention(kv, seqs, shape));
  int max_rows = 0;
  for (const AttnSeq& s : seqs) max_rows = std::max(max_rows, s.n_rows);
  return LaunchWriteKv(MakePagedKv(kv, shape, st.device, static_cast<int>(seqs.size())), k.data, k.stride, v.data,
                       v.stride, max_rows, stream_);
}

void CudaBackend::RopeWriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                              TensorView q, TensorView k, TensorView v, std::span<const int32_t> positions,
                              const RopeTable& rope) {
  OpScope scope(this, "RopeWriteKv");
  Note(DoRopeWriteKv(kv, seqs, shape, q, k, v, positions, rope));
}

Status CudaBackend::DoRopeWriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                                  TensorView q, TensorView k, TensorView v, std::span<const int32_t> positions,
                                  const RopeTable& rope) {
  SLIM_RETURN_IF_ERROR(CheckKv(kv, shape));
  if (q.dtype != DType::kBF16 || k.dtype != DType::kBF16 || v.dtype != DType::kBF16) {
    return InvalidArgumentError("cuda RopeWriteKv: q/k/v must be bf16");
  }
  if (seqs.empty()) return OkStatus();
  SLIM_ASSIGN_OR_RETURN(const int32_t* rope_dev, StageRope(positions, rope));
  SLIM_ASSIGN_OR_RETURN(AttnStaging st, StageAttention(kv, seqs, shape));
  int max_rows = 0;
  for (const AttnSeq& s : seqs) max_rows = std::max(max_rows, s.n_rows);
  const size_t nf = rope.inv_freq.size();
  return LaunchRopeWriteKv(MakePagedKv(kv, shape, st.device, static_cast<int>(seqs.size())), q.data, q.stride,
                           shape.n_heads, k.data, k.stride, v.data, v.stride, max_rows, rope.rope_dim,
                           rope_dev + 1 + nf, reinterpret_cast<const float*>(rope_dev + 1), stream_);
}

void CudaBackend::Attention(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                            TensorView q, TensorView out) {
  OpScope scope(this, "Attention");
  Note(DoAttention(kv, seqs, shape, q, out));
}

Status CudaBackend::DoAttention(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                                TensorView q, TensorView out) {
  SLIM_RETURN_IF_ERROR(CheckKv(kv, shape));
  if (q.dtype != DType::kBF16 || out.dtype != DType::kBF16) {
    return InvalidArgumentError("cuda Attention: q/out must be bf16");
  }
  if (seqs.empty()) return OkStatus();
  const int group = shape.n_heads / shape.n_kv_heads;
  if (!FlashSupports(shape.head_dim, kv.layout().block_tokens) && !DecodeSupports(shape.head_dim, group)) {
    return UnimplementedError("cuda Attention: head_dim " + std::to_string(shape.head_dim) + " with " +
                              std::to_string(group) + " query heads per KV head is not supported");
  }
  SLIM_ASSIGN_OR_RETURN(AttnStaging st, StageAttention(kv, seqs, shape));
  const int n = static_cast<int>(seqs.size());
  const void* dev = st.device;
  const PagedKv pkv = MakePagedKv(kv, shape, dev, n);
  const auto* base = static_cast<const int32_t*>(dev);
  if (st.n_tiles > 0) {
    FlashParams p;
    p.kv = pkv;
    p.q = q.data;
    p.q_stride = q.stride;
    p.out = out.data;
    p.out_stride = out.stride;
    p.tiles = reinterpret_cast<const FlashTile*>(base + st.tiles_at);
    p.n_tiles = st.n_tiles;
    p.n_heads = shape.n_heads;
    p.scale = shape.scale;
    p.kernel = flash_kernel_;
    SLIM_RETURN_IF_ERROR(LaunchFlashAttention(p, stream_));
  }
  if (st.n_items > 0) {
    DecodeParams p;
    p.kv = pkv;
    p.q = q.data;
    p.q_stride = q.stride;
    p.out = out.data;
    p.out_stride = out.stride;
    p.items = reinterpret_cast<const DecodeItem*>(base + st.items_at);
    p.n_items = st.n_items;
    p.n_heads = shape.n_heads;
    p.scale = shape.scale;
    p.n_splits = DecodeSplits(p.n_items, shape.n_kv_heads, st.max_decode_keys, n_sms_, shape.head_dim,
                              kv.layout().block_tokens);
    p.chunks_per_split =
        DecodeChunksPerSplit(p.n_items, shape.n_kv_heads, st.max_decode_keys, n_sms_, shape.head_dim);
    const size_t parts = static_cast<size_t>(p.n_items) * shape.n_heads * p.n_splits;
    SLIM_ASSIGN_OR_RETURN(void* scratch, attn_scratch_.Get(parts * (shape.head_dim + 2) * sizeof(float)));
    p.part_o = static_cast<float*>(scratch);
    p.part_ml = p.part_o + parts * shape.head_dim;
    SLIM_RETURN_IF_ERROR(LaunchDecodeAttention(p, stream_));
  }
  return OkStatus();
}

// ---- pruning scores ------------------------------------------------------------------------

Status CudaBackend::ScoreBlocks(TensorView q, TensorView k, const AttnShape& shape, int32_t row_begin, int32_t n_rows,
                                int block_tokens, int unit_tokens, int query_window, bool attention,
                                std::vector<float>* block_scores) {
  SLIM_RETURN_IF_ERROR(LaunchScores(&sync_scores_, q, k, shape, row_begin, n_rows, block_tokens, unit_tokens,
                                    query_window, attention));
  return CollectScores(&sync_scores_, block_scores);
}

Status CudaBackend::BeginScoreBlocks(int slot, TensorView q, TensorView k, const AttnShape& shape, int32_t row_begin,
                                     int32_t n_rows, int block_tokens, int unit_tokens, int query_window,
                                     bool attention) {
  if (slot < 0 || slot > 4096) return InvalidArgumentError("cuda BeginScoreBlocks: slot out of range");
  while (score_slots_.size() <= static_cast<size_t>(slot)) score_slots_.push_back(std::make_unique<ScoreSlot>());
  return LaunchScores(score_slots_[static_cast<size_t>(slot)].get(), q, k, shape, row_begin, n_rows, block_tokens,
                      unit_tokens, query_window, attention);
}

Status CudaBackend::EndScoreBlocks(int slot, std::vector<float>* block_scores) {
  if (slot < 0 || static_cast<size_t>(slot) >= score_slots_.size() || !score_slots_[static_cast<size_t>(slot)]->begun) {
    return FailedPreconditionError("cuda EndScoreBlocks: nothing begun in slot " + std::to_string(slot));
  }
  return CollectScores(score_slots_[static_cast<size_t>(slot)].get(), block_scores);
}

CudaBackend::ScoreSlot::~ScoreSlot() {
  if (done != nullptr) (void)cudaEventDestroy(done);
}

Status CudaBackend::LaunchScores(ScoreSlot* slot, TensorView q, TensorView k, const AttnShape& shape,
                                 int32_t row_begin, int32_t n_rows, int block_tokens, int unit_tokens,
                                 int query_window, bool attention) {
  OpScope scope(this, "ScoreBlocks");
  slot->begun = false;
  SLIM_RETURN_IF_ERROR(TakeError());
  if (q.dtype != k.dtype) return InvalidArgumentError("cuda ScoreBlocks: q and k dtypes differ");
  if (block_tokens <= 0 || unit_tokens <= 0 || block_tokens % unit_tokens != 0) {
    return InvalidArgumentError("cuda ScoreBlocks: unit_tokens must divide block_tokens");
  }
  if (n_rows < 0) return InvalidArgumentError("cuda ScoreBlocks: n_rows < 0");
  slot->n_units = (int64_t{n_rows} + unit_tokens - 1) / unit_tokens;
  slot->n_blocks = (int64_t{n_rows} + block_tokens - 1) / block_tokens;
  slot->units_per_block = block_tokens / unit_tokens;
  if (slot->done == nullptr) CUDA_CHECK(cudaEventCreateWithFlags(&slot->done, cudaEventDisableTiming));
  if (n_rows > 0) {
    BlockScoreArgs a;
    const TensorView qs = q.Rows(row_begin, n_rows), ks = k.Rows(row_begin, n_rows);
    a.q = qs.data;
    a.q_stride = qs.stride;
    a.k = ks.data;
    a.k_stride = ks.stride;
    a.dtype = q.dtype;
    a.n_rows = n_rows;
    a.n_heads = shape.n_heads;
    a.n_kv_heads = shape.n_kv_heads;
    a.head_dim = shape.head_dim;
    a.unit_tokens = unit_tokens;
    a.query_window = query_window;
    a.attention = attention;
    SLIM_ASSIGN_OR_RETURN(void* scratch, score_scratch_.Get(BlockScoreScratchFloats(a) * sizeof(float)));
    AssignBlockScoreScratch(&a, static_cast<float*>(scratch));
    SLIM_RETURN_IF_ERROR(LaunchBlockScores(a, stream_));
    // The scores come back through a copy kernel into pinned memory, not a DMA copy: a decode
    // step scores while the copy engines carry KV blocks between tiers, and a DMA read-back
    // would queue behind those transfers.
    const size_t bytes = static_cast<size_t>(slot->n_units) * sizeof(float);
    SLIM_ASSIGN_OR_RETURN(uint8_t* host, slot->host.Get(bytes));
    SLIM_RETURN_IF_ERROR(LaunchMappedCopy(a.unit_scores, host, bytes, stream_));
  }
  {
    CaptureGap gap;  // the host waits on this event: it must be recorded, not captured
    CUDA_CHECK(cudaEventRecord(slot->done, stream_));
  }
  slot->begun = true;
  return OkStatus();
}

Status CudaBackend::CollectScores(ScoreSlot* slot, std::vector<float>* block_scores) {
  slot->begun = false;
  CaptureGap gap;
  CUDA_CHECK(cudaEventSynchronize(slot->done));
  SLIM_RETURN_IF_ERROR(TakeError());
  block_scores->assign(static_cast<size_t>(slot->n_blocks), 0.0f);
  if (slot->n_units == 0) return OkStatus();
  SLIM_ASSIGN_OR_RETURN(uint8_t* host, slot->host.Get(static_cast<size_t>(slot->n_units) * sizeof(float)));
  const float* unit_scores = reinterpret_cast<const float*>(host);
  for (int64_t u = 0; u < slot->n_units; ++u) {
    float& b = (*block_scores)[static_cast<size_t>(u / slot->units_per_block)];
    b = std::max(b, unit_scores[u]);
  }
  return OkStatus();
}

Status CudaBackend::KeyUnitMeans(const kv::KvStore& kv, const kv::LayerTable& table, const AttnShape& shape,
                                 int32_t n_tokens, int unit_tokens, TensorView out) {
  OpScope scope(this, "KeyUnitMeans");
  SLIM_RETURN_IF_ERROR(TakeError());
  SLIM_RETURN_IF_ERROR(CheckKv(kv, shape));
  const kv::KvLayout& L = kv.layout();
  const int64_t kv_dim = int64_t{shape.n_kv_heads} * shape.head_dim;
  if (n_tokens < 0 || unit_tokens <= 0 || L.block_tokens % unit_tokens != 0) {
    return InvalidArgumentError("cuda KeyUnitMeans: n_tokens >= 0 and a unit dividing the block required");
  }
  const int64_t n_blocks = (int64_t{n_tokens} + L.block_tokens - 1) / L.block_tokens;
  const int64_t n_units = (int64_t{n_tokens} + unit_tokens - 1) / unit_tokens;
  if (static_cast<int64_t>(table.blocks.size()) < n_blocks) {
    return InvalidArgumentError("cuda KeyUnitMeans: the table holds fewer than n_tokens tokens");
  }
  if (out.rows != n_units || out.cols != kv_dim || out.device != Device::kCuda) {
    return InvalidArgumentError("cuda KeyUnitMeans: out must be [n_units, kv_dim] on the device");
  }
  if (n_tokens == 0) return OkStatus();
  SLIM_ASSIGN_OR_RETURN(const void* ids, stager_.Stage(table.blocks.data(), static_cast<size_t>(n_blocks) * sizeof(int32_t)));
  const kv::GpuView view = kv.View();
  KeyUnitMeanArgs a;
  a.arena = view.base;
  a.block_bytes = static_cast<int64_t>(view.block_bytes);
  a.head_bytes = static_cast<int64_t>(view.head_bytes);
  a.blocks = static_cast<const int32_t*>(ids);
  a.n_tokens = n_tokens;
  a.n_kv_heads = shape.n_kv_heads;
  a.head_dim = shape.head_dim;
  a.block_tokens = L.block_tokens;
  a.unit_tokens = unit_tokens;
  a.out = out.data;
  a.out_dtype = out.dtype;
  a.out_stride = out.stride;
  return LaunchKeyUnitMeans(a, stream_);
}

Status CudaBackend::SummarizeLogits(TensorView logits, std::span<const SummaryRequest> requests,
                                    std::vector<LogitsSummary>* out) {
  OpScope scope(this, "SummarizeLogits");
  SLIM_RETURN_IF_ERROR(TakeError());
  if (logits.dtype != DType::kF32) return InvalidArgumentError("cuda SummarizeLogits: f32 logits only");
  if (static_cast<int64_t>(requests.size()) != logits.rows) {
    return InvalidArgumentError("cuda SummarizeLogits: one request per logits row");
  }
  int32_t k_max = 0;
  size_t n_pairs = 0;
  for (const SummaryRequest& r : requests) {
    SLIM_RETURN_IF_ERROR(ValidateSummaryRequest(r, logits.cols));
    k_max = std::max(k_max, r.k);
    if (r.k > 0) n_pairs += r.penalties.size();
  }
  out->assign(requests.size(), LogitsSummary{});
  if (k_max == 0) return OkStatus();
  const int32_t n_rows = static_cast<int32_t>(requests.size());
  // Staged words: SummaryRowArgs per row, then the pair ids, then their counts.
  constexpr size_t kRowWords = sizeof(SummaryRowArgs) / sizeof(int32_t);
  summary_words_.resize(requests.size() * kRowWords + 2 * n_pairs);
  int32_t* ids = summary_words_.data() + requests.size() * kRowWords;
  int32_t* counts = ids + n_pairs;
  int32_t at = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const SummaryRequest& r = requests[i];
    SummaryRowArgs ra;
    ra.pair_begin = at;
    ra.n_pairs = r.k > 0 ? static_cast<int32_t>(r.penalties.size()) : 0;
    ra.k = r.k;
    ra.repetition_penalty = r.repetition_penalty;
    ra.frequency_penalty = r.frequency_penalty;
    ra.presence_penalty = r.presence_penalty;
    ra.inv_t = r.inv_t;
    std::memcpy(summary_words_.data() + i * kRowWords, &ra, sizeof(ra));
    for (int32_t j = 0; j < ra.n_pairs; ++j, ++at) {
      ids[at] = r.penalties[static_cast<size_t>(j)].id;
      counts[at] = r.penalties[static_cast<size_t>(j)].count;
    }
  }
  SLIM_ASSIGN_OR_RETURN(const void* staged, stager_.Stage(summary_words_.data(), summary_words_.size() * sizeof(int32_t)));
  const int32_t vocab = static_cast<int32_t>(logits.cols);
  SLIM_ASSIGN_OR_RETURN(void* scratch, summary_scratch_.Get(LogitsSummaryScratchBytes(
                                           n_rows, vocab, k_max, static_cast<int32_t>(n_pairs))));
  LogitsSummaryArgs a;
  a.logits = logits.as<float>();
  a.stride = logits.stride;
  a.vocab = vocab;
  a.n_rows = n_rows;
  a.k_max = k_max;
  a.rows = static_cast<const SummaryRowArgs*>(staged);
  a.pair_ids = static_cast<const int32_t*>(staged) + requests.size() * kRowWords;
  a.pair_counts = a.pair_ids + n_pairs;
  a.n_pairs = static_cast<int32_t>(n_pairs);
  a.scratch = scratch;
  SLIM_RETURN_IF_ERROR(LaunchLogitsSummary(a, stream_));
  const size_t out_bytes = SummaryOutputBytes(n_rows, k_max);
  SLIM_ASSIGN_OR_RETURN(uint8_t* host_out, summary_host_.Get(out_bytes));
  SLIM_RETURN_IF_ERROR(LaunchMappedCopy(scratch, host_out, out_bytes, stream_));
  CaptureGap gap;
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  const uint8_t* tops = host_out + requests.size() * sizeof(SummaryRowOut);
  for (size_t i = 0; i < requests.size(); ++i) {
    SummaryRowOut o;
    std::memcpy(&o, host_out + i * sizeof(SummaryRowOut), sizeof(o));
    LogitsSummary& s = (*out)[i];
    s.max_logit = o.max_logit;
    s.z = o.z;
    s.top.resize(static_cast<size_t>(o.n_top));
    std::memcpy(s.top.data(), tops + i * static_cast<size_t>(k_max) * sizeof(TopLogit),
                static_cast<size_t>(o.n_top) * sizeof(TopLogit));
  }
  return OkStatus();
}

}  // namespace slim::cuda
