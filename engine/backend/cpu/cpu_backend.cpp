// CpuBackend: fp32 ops over host memory. Projections and prefill attention go to OpenBLAS
// sgemm (its own threads); element-wise loops and decode attention to the thread pool.
#include "engine/backend/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <type_traits>

#include "engine/backend/cpu/cpu_math.h"
#include "engine/backend/cpu/quant_gemv.h"
#include "engine/pruning/block_scorer.h"
#include "kvstore/host_tier_memory.h"

namespace slim::cpu {

namespace {

float* RowPtr(TensorView t, int64_t r) { return t.as<float>() + r * t.stride; }

int DefaultThreads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace

CpuBackend::CpuBackend(int threads, DType kv_dtype)
    : threads_(threads > 0 ? threads : DefaultThreads()), kv_dtype_(kv_dtype), pool_(threads_) {
  openblas_set_num_threads(threads_);
}

std::string CpuBackend::Describe() const {
  return std::string("cpu (fp32, ") + (kv_dtype_ == DType::kF16 ? "f16 KV, " : "") + "OpenBLAS, " +
         std::to_string(threads_) + " threads)";
}

StatusOr<std::unique_ptr<kv::TierMemory>> CpuBackend::CreateKvMemory() {
  return std::unique_ptr<kv::TierMemory>(new kv::HostTierMemory());
}

StatusOr<Buffer> CpuBackend::Alloc(DType dtype, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) return InvalidArgumentError("cpu alloc: negative shape");
  const size_t bytes = static_cast<size_t>(rows) * static_cast<size_t>(cols) * DTypeBytes(dtype);
  const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (p == nullptr) {
    return ResourceExhaustedError("cpu alloc: cannot allocate " + std::to_string(bytes) + " bytes");
  }
  TensorView v;
  v.data = p;
  v.dtype = dtype;
  v.device = Device::kCpu;
  v.rows = rows;
  v.cols = cols;
  v.stride = cols;
  return Buffer(v, [](void* q) { std::free(q); });
}

Status CpuBackend::Upload(const float* host, TensorView dst) {
  if (dst.dtype != DType::kF32) return InvalidArgumentError("cpu backend holds f32 only");
  for (int64_t r = 0; r < dst.rows; ++r)
    std::memcpy(RowPtr(dst, r), host + r * dst.cols, static_cast<size_t>(dst.cols) * sizeof(float));
  return OkStatus();
}

bool CpuBackend::Check(bool ok, const char* what) {
  if (!ok && error_.ok()) error_ = InvalidArgumentError(what);
  return ok;
}

Status CpuBackend::TakeError() {
  Status s = error_;
  error_ = OkStatus();
  return s;
}

Status CpuBackend::Download(TensorView src, float* host) {
  SLIM_RETURN_IF_ERROR(TakeError());
  if (src.dtype != DType::kF32) return InvalidArgumentError("cpu backend holds f32 only");
  for (int64_t r = 0; r < src.rows; ++r)
    std::memcpy(host + r * src.cols, RowPtr(src, r), static_cast<size_t>(src.cols) * sizeof(float));
  return OkStatus();
}

Status CpuBackend::SummarizeLogits(TensorView logits, std::span<const SummaryRequest> requests,
                                   std::vector<LogitsSummary>* out) {
  SLIM_RETURN_IF_ERROR(TakeError());
  if (logits.dtype != DType::kF32) return InvalidArgumentError("cpu backend holds f32 only");
  return SummarizeRows(logits.as<float>(), logits.rows, logits.cols, logits.stride, requests, &summary_scratch_, out);
}

void CpuBackend::Embed(TensorView table, std::span<const int32_t> ids, TensorView out) {
  if (!Check(static_cast<int64_t>(ids.size()) == out.rows && table.cols == out.cols, "cpu Embed: shapes")) return;
  for (int32_t id : ids) {
    if (!Check(id >= 0 && id < table.rows, "cpu Embed: id outside the table")) return;
  }
  for (size_t i = 0; i < ids.size(); ++i)
    std::memcpy(RowPtr(out, static_cast<int64_t>(i)), RowPtr(table, ids[i]),
                static_cast<size_t>(out.cols) * sizeof(float));
}

void CpuBackend::RmsNorm(TensorView x, TensorView w, float eps, TensorView out) {
  if (!Check(x.rows == out.rows && x.cols == out.cols && w.cols == x.cols, "cpu RmsNorm: shapes")) return;
  const float* wp = w.as<float>();
  pool_.ParallelFor(x.rows, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) RmsNormRow(RowPtr(x, r), wp, eps, RowPtr(out, r), x.cols);
  }, 16);
}

void CpuBackend::Add(TensorView acc, TensorView x) {
  if (!Check(acc.rows == x.rows && acc.cols == x.cols, "cpu Add: shapes")) return;
  pool_.ParallelFor(acc.rows, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* a = RowPtr(acc, r);
      const float* y = RowPtr(x, r);
#pragma omp simd
      for (int64_t c = 0; c < acc.cols; ++c) a[c] += y[c];
    }
  }, 16);
}

void CpuBackend::AddBias(TensorView x, TensorView bias) {
  if (!Check(bias.rows == 1 && bias.cols == x.cols && bias.dtype == DType::kF32, "cpu AddBias: shapes")) return;
  const float* b = bias.as<float>();
  pool_.ParallelFor(x.rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* a = RowPtr(x, r);
#pragma omp simd
      for (int64_t c = 0; c < x.cols; ++c) a[c] += b[c];
    }
  }, 16);
}

void CpuBackend::MatMul(TensorView x, TensorView w, TensorView out) {
  if (!Check(x.cols == w.cols && out.rows == x.rows && out.cols == w.rows, "cpu MatMul: shapes")) return;
  if (x.rows == 0) return;
  if (x.rows == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(w.rows), static_cast<int>(w.cols), 1.0f,
                w.as<float>(), static_cast<int>(w.stride), x.as<float>(), 1, 0.0f, out.as<float>(), 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(x.rows),
              static_cast<int>(w.rows), static_cast<int>(x.cols), 1.0f, x.as<float>(),
              static_cast<int>(x.stride), w.as<float>(), static_cast<int>(w.stride), 0.0f,
              out.as<float>(), static_cast<int>(out.stride));
}

StatusOr<Buffer> CpuBackend::UploadQuantized(uint32_t ggml_type, const uint8_t* rows, int64_t n_rows,
                                             int64_t cols) {
  const auto t = static_cast<gguf::TensorType>(ggml_type);
  if (!CanQuantGemv(t) || cols % 32 != 0) return UnimplementedError("cpu: no quantized kernel for this type");
  const size_t row_bytes = QuantRowBytes(t, cols);
  const size_t bytes = row_bytes * static_cast<size_t>(n_rows);
  void* p = std::aligned_alloc(64, (std::max<size_t>(bytes, 1) + 63) / 64 * 64);
  if (p == nullptr) return ResourceExhaustedError("cpu: cannot allocate quantized weights");
  std::memcpy(p, rows, bytes);
  TensorView v;
  v.data = p;
  v.dtype = DType::kQuant;
  v.quant_type = ggml_type;
  v.rows = n_rows;
  v.cols = cols;
  v.stride = static_cast<int64_t>(row_bytes);
  return Buffer(v, [](void* q) { std::free(q); });
}

// Up to this many rows of x, the quantized rows are streamed instead of the fp32 weights.
constexpr int64_t kQuantGemvMaxRows = 8;

void CpuBackend::MatMulQ(TensorView x, TensorView w, const Buffer* wq, TensorView out) {
  if (wq == nullptr || wq->empty() || x.rows > kQuantGemvMaxRows || x.rows == 0) {
    MatMul(x, w, out);
    return;
  }
  const TensorView& q = wq->view();
  if (!Check(q.rows == w.rows && q.cols == x.cols && out.rows == x.rows && out.cols == w.rows,
             "cpu MatMulQ: shapes")) {
    return;
  }
  const auto t = static_cast<gguf::TensorType>(q.quant_type);
  const int n_in = static_cast<int>(x.rows);
  pool_.ParallelFor(q.rows, [&](int64_t b, int64_t e) {
    QuantGemvRows(t, static_cast<const uint8_t*>(q.data), q.cols, x.as<float>(), x.stride, n_in, out.as<float>(),
                  out.stride, b, e);
  }, 64);
}

void CpuBackend::Rope(TensorView x, int n_heads, int head_dim, std::span<const int32_t> positions,
                      const RopeTable& rope) {
  if (!Check(static_cast<int64_t>(positions.size()) == x.rows && x.cols == int64_t{n_heads} * head_dim,
             "cpu Rope: shapes")) {
    return;
  }
  const int half = rope.rope_dim / 2;
  pool_.ParallelFor(x.rows, [&](int64_t b, int64_t e) {
    std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
    for (int64_t r = b; r < e; ++r) {
      const double pos = positions[static_cast<size_t>(r)];
      for (int i = 0; i < half; ++i) {
        const double theta = pos * rope.inv_freq[static_cast<size_t>(i)];
        cs[static_cast<size_t>(i)] = static_cast<float>(std::cos(theta));
        sn[static_cast<size_t>(i)] = static_cast<float>(std::sin(theta));
      }
      float* row = RowPtr(x, r);
      for (int h = 0; h < n_heads; ++h) {
        float* v = row + static_cast<int64_t>(h) * head_dim;
        for (int i = 0; i < half; ++i) {
          const float x0 = v[2 * i], x1 = v[2 * i + 1];
          v[2 * i] = x0 * cs[static_cast<size_t>(i)] - x1 * sn[static_cast<size_t>(i)];
          v[2 * i + 1] = x0 * sn[static_cast<size_t>(i)] + x1 * cs[static_cast<size_t>(i)];
        }
      }
    }
  }, 8);
}

void CpuBackend::SwiGlu(TensorView gate_up, TensorView out) {
  const int64_t ff = out.cols;
  if (!Check(gate_up.cols == 2 * ff && gate_up.rows == out.rows, "cpu SwiGlu: shapes")) return;
  pool_.ParallelFor(out.rows, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* g = RowPtr(gate_up, r);
      const float* u = g + ff;
      float* o = RowPtr(out, r);
      for (int64_t c = 0; c < ff; ++c) o[c] = Silu(g[c]) * u[c];
    }
  }, 8);
}

void CpuBackend::GatherRows(TensorView src, std::span<const int32_t> rows, TensorView dst) {
  if (!Check(static_cast<int64_t>(rows.size()) == dst.rows && src.cols == dst.cols, "cpu GatherRows: shapes")) return;
  for (int32_t r : rows) {
    if (!Check(r >= 0 && r < src.rows, "cpu GatherRows: row outside the source")) return;
  }
  for (size_t i = 0; i < rows.size(); ++i)
    std::memmove(RowPtr(dst, static_cast<int64_t>(i)), RowPtr(src, rows[i]),
                 static_cast<size_t>(dst.cols) * sizeof(float));
}

// Block memory: K [n_kv_heads][block_tokens][head_dim] then V, fp32 or f16 (kv_dtype_).
namespace {

template <typename T>
void PutRow(const float* src, T* dst, int n) {
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(n));
  } else {
    ToF16(src, dst, n);
  }
}

template <typename T>
void GetRows(const T* src, float* dst, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(n));
  } else {
    FromF16(src, dst, static_cast<int>(n));
  }
}

template <typename T>
void WriteKvRows(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape, TensorView k,
                 TensorView v) {
  const kv::KvLayout& L = kv.layout();
  const size_t head_elems = static_cast<size_t>(L.block_tokens) * L.head_dim;
  for (const AttnSeq& s : seqs) {
    for (int32_t r = 0; r < s.n_rows; ++r) {
      const int32_t slot = s.n_past + r;
      T* block = reinterpret_cast<T*>(kv.Data(s.table->blocks[static_cast<size_t>(slot / L.block_tokens)]));
      const int32_t t = slot % L.block_tokens;
      const float* krow = RowPtr(k, s.row_begin + r);
      const float* vrow = RowPtr(v, s.row_begin + r);
      for (int g = 0; g < shape.n_kv_heads; ++g) {
        PutRow(krow + g * shape.head_dim, block + g * head_elems + static_cast<size_t>(t) * L.head_dim, shape.head_dim);
        PutRow(vrow + g * shape.head_dim,
               block + (shape.n_kv_heads + g) * head_elems + static_cast<size_t>(t) * L.head_dim, shape.head_dim);
      }
    }
  }
}

}  // namespace

void CpuBackend::WriteKv(const kv::KvStore& kv, std::span<const AttnSeq> seqs, const AttnShape& shape,
                         TensorView k, TensorView v) {
  if (!Check(kv.layout().elem_bytes == DTypeBytes(kv_dtype_), "cpu WriteKv: KV element type")) return;
  if (kv_dtype_ == DType::kF16) {
    WriteKvRows<f16>(kv, seqs, shape, k, v);
  } else {
    WriteKvRows<float>(kv, seqs, shape, k, v);
  }
}

void CpuBackend::Attention(const kv::KvStore& kv, std::span<const AttnSeq> seqs,
                           const AttnShape& shape, TensorView q, TensorView out) {
  // Decode rows of all sequences in one parallel loop; prefill-sized sequences through sgemm.
  constexpr int32_t kGemmRows = 16;
  std::vector<const AttnSeq*> small;
  for (const AttnSeq& s : seqs) {
    if (s.n_rows >= kGemmRows) AttentionGemm(kv, s, shape, q, out);
    else if (s.n_rows > 0) small.push_back(&s);
  }
  if (small.empty()) return;
  if (kv_dtype_ == DType::kF16) {
    AttentionDecode<f16>(kv, small, shape, q, out);
  } else {
    AttentionDecode<float>(kv, small, shape, q, out);
  }
}

// Few-row (decode) attention, split-K: work items are (sequence, row, KV head, key chunk).
// Each item reads its keys and values once for all the query heads of its KV head and leaves
// a partial softmax (max, sum, unnormalised output per head); partials merge afterwards.
template <typename T>
void CpuBackend::AttentionDecode(const kv::KvStore& kv, const std::vector<const AttnSeq*>& seqs,
                                 const AttnShape& shape, TensorView q, TensorView out) {
  const kv::KvLayout& L = kv.layout();
  const int hd = shape.head_dim, G = shape.n_heads / shape.n_kv_heads;
  const size_t head_floats = static_cast<size_t>(L.block_tokens) * hd;
  constexpr int32_t kChunk = 256;  // keys per work item (a multiple of the block size or not)
  struct Item {
    const AttnSeq* s;
    int32_t row, g, t0, t1;
  };
  std::vector<Item> items;
  for (const AttnSeq* s : seqs)
    for (int32_t r = 0; r < s->n_rows; ++r) {
      const int32_t n_keys = s->n_past + r + 1;
      for (int32_t g = 0; g < shape.n_kv_heads; ++g)
        for (int32_t t0 = 0; t0 < n_keys; t0 += kChunk) items.push_back({s, r, g, t0, std::min(n_keys, t0 + kChunk)});
    }
  // Per item and query head of the group: max, sum, then hd accumulated values.
  const size_t part = static_cast<size_t>(2 + hd);
  partials_.resize(items.size() * static_cast<size_t>(G) * part);
  pool_.ParallelFor(static_cast<int64_t>(items.size()), [&](int64_t b, int64_t e) {
    std::vector<float> sc(static_cast<size_t>(G) * kChunk);
    for (int64_t i = b; i < e; ++i) {
      const Item& it = items[static_cast<size_t>(i)];
      const int32_t n = it.t1 - it.t0;
      const float* qrow = RowPtr(q, it.s->row_begin + it.row) + static_cast<int64_t>(it.g) * G * hd;
      std::fill(sc.begin(), sc.end(), 0.0f);
      for (int32_t t = it.t0; t < it.t1; ++t) {
        const T* block = reinterpret_cast<const T*>(
            kv.Data(it.s->table->blocks[static_cast<size_t>(t / L.block_tokens)]));
        const T* kt = block + it.g * head_floats + static_cast<size_t>(t % L.block_tokens) * hd;
        for (int j = 0; j < G; ++j) sc[static_cast<size_t>(j * kChunk + (t - it.t0))] = Dot(qrow + j * hd, kt, hd) * shape.scale;
      }
      float* pp = &partials_[static_cast<size_t>(i) * G * part];
      for (int j = 0; j < G; ++j) {
        float* row = &sc[static_cast<size_t>(j) * kChunk];
        float mx = -INFINITY;
        for (int32_t t = 0; t < n; ++t) mx = row[t] > mx ? row[t] : mx;
        float sum = 0.0f;
        for (int32_t t = 0; t < n; ++t) sum += (row[t] = ExpNonPositive(row[t] - mx));
        pp[j * part] = mx;
        pp[j * part + 1] = sum;
        std::fill(pp + j * part + 2, pp + (j + 1) * part, 0.0f);
      }
      for (int32_t t = it.t0; t < it.t1; ++t) {
        const T* block = reinterpret_cast<const T*>(
            kv.Data(it.s->table->blocks[static_cast<size_t>(t / L.block_tokens)]));
        const T* vt = block + (shape.n_kv_heads + it.g) * head_floats + static_cast<size_t>(t % L.block_tokens) * hd;
        for (int j = 0; j < G; ++j) Axpy(sc[static_cast<size_t>(j * kChunk + (t - it.t0))], vt, pp + j * part + 2, hd);
      }
    }
  });
  // Merge the chunks of each (sequence, row, KV head) in order.
  for (size_t i = 0; i < items.size();) {
    size_t k = i;
    while (k < items.size() && items[k].s == items[i].s && items[k].row == items[i].row && items[k].g == items[i].g) ++k;
    const Item& it = items[i];
    for (int j = 0; j < G; ++j) {
      float mx = -INFINITY;
      for (size_t c = i; c < k; ++c) mx = std::max(mx, partials_[(c * G + j) * part]);
      float sum = 0.0f;
      float* o = RowPtr(out, it.s->row_begin + it.row) + static_cast<int64_t>(it.g * G + j) * hd;
      std::fill(o, o + hd, 0.0f);
      for (size_t c = i; c < k; ++c) {
        const float* pc = &partials_[(c * G + j) * part];
        const float w = ExpNonPositive(pc[0] - mx);
        sum += w * pc[1];
        Axpy(w, pc + 2, o, hd);
      }
      const float inv = 1.0f / sum;
      for (int d = 0; d < hd; ++d) o[d] *= inv;
    }
    i = k;
  }
}

void CpuBackend::AttentionGemm(const kv::KvStore& kv, const AttnSeq& s, const AttnShape& shape,
                               TensorView q, TensorView out) {
  const kv::KvLayout& L = kv.layout();
  const int hd = shape.head_dim;
  const int group = shape.n_heads / shape.n_kv_heads;
  const int64_t n_total = s.n_past + s.n_rows;
  const size_t head_floats = static_cast<size_t>(L.block_tokens) * hd;
  constexpr int64_t kChunk = 256;  // query rows per score matrix (times the group size)
  const int64_t max_m = group * std::min<int64_t>(kChunk, s.n_rows);
  k_scratch_.resize(static_cast<size_t>(n_total * hd));
  v_scratch_.resize(static_cast<size_t>(n_total * hd));
  s_scratch_.resize(static_cast<size_t>(max_m * n_total));
  q_scratch_.resize(static_cast<size_t>(max_m * hd));
  o_scratch_.resize(static_cast<size_t>(max_m * hd));
  for (int g = 0; g < shape.n_kv_heads; ++g) {
    // Gather this head's K and V into contiguous [n_total, hd].
    for (int64_t b = 0; b * L.block_tokens < n_total; ++b) {
      const uint8_t* block = kv.Data(s.table->blocks[static_cast<size_t>(b)]);
      const int64_t n = std::min<int64_t>(L.block_tokens, n_total - b * L.block_tokens);
      float* kd = &k_scratch_[static_cast<size_t>(b * L.block_tokens * hd)];
      float* vd = &v_scratch_[static_cast<size_t>(b * L.block_tokens * hd)];
      if (kv_dtype_ == DType::kF16) {
        const f16* h = reinterpret_cast<const f16*>(block);
        GetRows(h + g * head_floats, kd, n * hd);
        GetRows(h + (shape.n_kv_heads + g) * head_floats, vd, n * hd);
      } else {
        const float* f = reinterpret_cast<const float*>(block);
        GetRows(f + g * head_floats, kd, n * hd);
        GetRows(f + (shape.n_kv_heads + g) * head_floats, vd, n * hd);
      }
    }
    // The query heads of this KV head are stacked into one [group * rows, hd] matrix per chunk,
    // so each GEMM packs K (and V) once for all of them.
    for (int64_t r0 = 0; r0 < s.n_rows; r0 += kChunk) {
      const int64_t rows = std::min<int64_t>(kChunk, s.n_rows - r0);
      const int64_t m = group * rows;
      const int64_t n_keys = s.n_past + r0 + rows;  // keys the last row of the chunk sees
      for (int j = 0; j < group; ++j)
        for (int64_t i = 0; i < rows; ++i)
          std::memcpy(&q_scratch_[static_cast<size_t>((j * rows + i) * hd)],
                      RowPtr(q, s.row_begin + r0 + i) + static_cast<int64_t>(g * group + j) * hd,
                      sizeof(float) * static_cast<size_t>(hd));
      float* sp = s_scratch_.data();
      // S[m, n_keys] = scale * Q[m, hd] * K[n_keys, hd]^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n_keys), hd,
                  shape.scale, q_scratch_.data(), hd, k_scratch_.data(), hd, 0.0f, sp, static_cast<int>(n_keys));
      // Causal softmax: stacked row j * rows + i is query row r0 + i, which sees keys
      // [0, n_past + r0 + i].
      pool_.ParallelFor(m, [&](int64_t b, int64_t e) {
        for (int64_t jr = b; jr < e; ++jr) {
          float* row = sp + jr * n_keys;
          const int64_t visible = s.n_past + r0 + jr % rows + 1;
          SoftmaxRow(row, visible);
          std::fill(row + visible, row + n_keys, 0.0f);
        }
      }, 8);
      // O[m, hd] = P[m, n_keys] * V[n_keys, hd], then back to each head's columns.
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), hd, static_cast<int>(n_keys),
                  1.0f, sp, static_cast<int>(n_keys), v_scratch_.data(), hd, 0.0f, o_scratch_.data(), hd);
      for (int j = 0; j < group; ++j)
        for (int64_t i = 0; i < rows; ++i)
          std::memcpy(RowPtr(out, s.row_begin + r0 + i) + static_cast<int64_t>(g * group + j) * hd,
                      &o_scratch_[static_cast<size_t>((j * rows + i) * hd)], sizeof(float) * static_cast<size_t>(hd));
    }
  }
}

Status CpuBackend::ScoreBlocks(TensorView q, TensorView k, const AttnShape& shape, int32_t row_begin,
                               int32_t n_rows, int block_tokens, int unit_tokens, int query_window,
                               bool attention, std::vector<float>* block_scores) {
  BlockScoreParams p;
  p.n_heads = shape.n_heads;
  p.n_kv_heads = shape.n_kv_heads;
  p.head_dim = shape.head_dim;
  p.block_tokens = block_tokens;
  p.unit_tokens = unit_tokens;
  p.query_window = query_window;
  p.attention = attention;
  *block_scores = ScoreBlocksRef(RowPtr(q, row_begin), q.stride, RowPtr(k, row_begin), k.stride, n_rows, p);
  return OkStatus();
}

StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const BackendOptions& options) {
  DType kv = DType::kF32;
  if (options.kv_cache == KvCache::kF16) {
    kv = DType::kF16;
  } else if (options.kv_cache == KvCache::kBf16) {
    return InvalidArgumentError("cpu KV cache type 'bf16' (known: auto, f32, f16)");
  }
  return std::unique_ptr<Backend>(new CpuBackend(options.threads, kv));
}

}  // namespace slim::cpu
