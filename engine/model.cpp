// Model loading (weights by name, shapes checked, fused projections) and the layer loop.
#include "engine/model.h"

#include <cmath>
#include <cstring>
#include <string>
#include <unordered_set>

#include "engine/gguf/gguf_file.h"
#include "engine/model_batch.h"
#include "engine/pruning/block_scorer.h"

namespace slim {

RopeTable MakeRopeTable(const ModelConfig& c, const std::vector<float>& freq_factors) {
  RopeTable t;
  t.rope_dim = c.rope_dim;
  const int half = c.rope_dim / 2;
  t.inv_freq.resize(static_cast<size_t>(half));
  const RopeScaling& rs = c.rope_scaling;
  for (int i = 0; i < half; ++i) {
    double f = std::pow(static_cast<double>(c.rope_theta), -2.0 * i / c.rope_dim);
    if (rs.type == RopeScaling::Type::kLinear) {
      f /= rs.factor;
    } else if (rs.type == RopeScaling::Type::kLlama3 && freq_factors.empty()) {
      const double low_wavelen = rs.original_context / rs.low_freq_factor;
      const double high_wavelen = rs.original_context / rs.high_freq_factor;
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f /= rs.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (rs.original_context / wavelen - rs.low_freq_factor) /
                              (rs.high_freq_factor - rs.low_freq_factor);
        f = (1.0 - smooth) * f / rs.factor + smooth * f;
      }
    }
    if (!freq_factors.empty()) f /= freq_factors[static_cast<size_t>(i)];
    t.inv_freq[static_cast<size_t>(i)] = static_cast<float>(f);
  }
  return t;
}

Model::Model(ModelConfig config, Backend* backend) : config_(std::move(config)), backend_(backend) {
  shape_.n_heads = config_.n_heads;
  shape_.n_kv_heads = config_.n_kv_heads;
  shape_.head_dim = config_.head_dim;
  shape_.scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));
}

kv::KvLayout Model::KvLayoutFor(int block_tokens) const {
  kv::KvLayout l;
  l.n_layers = config_.n_layers;
  l.n_kv_heads = config_.n_kv_heads;
  l.head_dim = config_.head_dim;
  l.block_tokens = block_tokens;
  l.elem_bytes = DTypeBytes(backend_->kv_dtype());
  return l;
}

namespace {

// Reads one or more source tensors stacked by rows into a new backend buffer.
struct Part {
  std::string name;
  int64_t rows;
  // Q or K rows of a GPT-NeoX-RoPE model (ModelConfig::rope_neox): heads of head_dim rows whose
  // first rope_dim rows are reordered from (i, i + rope_dim / 2) pairs to (2i, 2i + 1) pairs.
  int head_dim = 0, rope_dim = 0;
};

Part QkPart(std::string name, int n_heads, const ModelConfig& c) {
  Part p{std::move(name), int64_t{n_heads} * c.head_dim};
  if (c.rope_neox) {
    p.head_dim = c.head_dim;
    p.rope_dim = c.rope_dim;
  }
  return p;
}

// Applies Part's NeoX-to-adjacent pair reordering to its rows (row_bytes each) in place; rows
// may be fp32 values, quantized blocks or single bias elements.
void InterleaveRopeRows(const Part& p, uint8_t* rows, size_t row_bytes) {
  if (p.rope_dim == 0) return;
  const int half = p.rope_dim / 2;
  std::vector<uint8_t> head(static_cast<size_t>(p.rope_dim) * row_bytes);
  for (int64_t h = 0; h < p.rows / p.head_dim; ++h) {
    uint8_t* base = rows + static_cast<size_t>(h * p.head_dim) * row_bytes;
    std::memcpy(head.data(), base, head.size());
    for (int j = 0; j < p.rope_dim; ++j) {
      const int from = j % 2 == 0 ? j / 2 : j / 2 + half;
      std::memcpy(base + static_cast<size_t>(j) * row_bytes, head.data() + static_cast<size_t>(from) * row_bytes,
                  row_bytes);
    }
  }
}

StatusOr<Buffer> LoadStacked(const WeightSource& src, Backend* be, const std::vector<Part>& parts,
                             int64_t cols, DType dtype, size_t* bytes) {
  int64_t rows = 0;
  for (const Part& p : parts) rows += p.rows;
  // Synthetic weights on a device backend are generated in place (an 8B model's 32 GB of fp32
  // would otherwise be drawn and converted on the host); being random, they need no RoPE row
  // reordering.
  if (be->device() != Device::kCpu) {
    std::vector<SyntheticFill> fills;
    for (const Part& p : parts) {
      std::optional<SyntheticFill> f = src.SyntheticSpec(p.name, cols);
      if (!f) break;
      fills.push_back(*f);
    }
    if (fills.size() == parts.size()) {
      SLIM_ASSIGN_OR_RETURN(Buffer buf, be->Alloc(dtype, rows, cols));
      Status s;
      int64_t r = 0;
      for (size_t i = 0; i < parts.size() && s.ok(); ++i) {
        s = be->FillSynthetic(fills[i], buf.view().Rows(r, parts[i].rows));
        r += parts[i].rows;
      }
      if (s.ok()) {
        *bytes += static_cast<size_t>(rows * cols) * DTypeBytes(dtype);
        return buf;
      }
      if (s.code() != StatusCode::kUnimplemented) return s.WithPrefix("synthetic weights '" + parts[0].name + "'");
    }
  }
  std::vector<float> host(static_cast<size_t>(rows * cols));
  int64_t r = 0;
  for (const Part& p : parts) {
    SLIM_RETURN_IF_ERROR(src.ReadF32(p.name, p.rows, cols, host.data() + r * cols));
    InterleaveRopeRows(p, reinterpret_cast<uint8_t*>(host.data() + r * cols), static_cast<size_t>(cols) * sizeof(float));
    r += p.rows;
  }
  SLIM_ASSIGN_OR_RETURN(Buffer buf, be->Alloc(dtype, rows, cols));
  SLIM_RETURN_IF_ERROR(be->Upload(host.data(), buf.view()));
  *bytes += static_cast<size_t>(rows * cols) * DTypeBytes(dtype);
  return buf;
}

// The GGUF-quantized rows of `parts` stacked into one backend buffer, when the backend keeps
// such copies and every part has the same supported type; an empty buffer otherwise.
StatusOr<Buffer> LoadQuantized(const WeightSource& src, Backend* be, const std::vector<Part>& parts, int64_t cols) {
  const gguf::GgufFile* f = src.gguf_file();
  if (f == nullptr || !be->WantsQuantizedWeights()) return Buffer();
  std::vector<uint8_t> bytes;
  int64_t rows = 0;
  uint32_t type = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const gguf::TensorInfo* t = f->FindTensor(parts[i].name);
    if (t == nullptr) return Buffer();
    const uint32_t ty = static_cast<uint32_t>(t->type);
    if (i > 0 && ty != type) return Buffer();
    type = ty;
    const size_t at = bytes.size();
    bytes.insert(bytes.end(), t->data, t->data + t->n_bytes);
    InterleaveRopeRows(parts[i], bytes.data() + at, t->n_bytes / static_cast<size_t>(parts[i].rows));
    rows += parts[i].rows;
  }
  StatusOr<Buffer> buf = be->UploadQuantized(type, bytes.data(), rows, cols);
  if (!buf.ok() && buf.status().code() == StatusCode::kUnimplemented) return Buffer();
  return buf;
}

// The Q, K and V biases of layer prefix `p` as one f32 row [1, qd + 2 kvd] (the fused QKV
// projection's column order), with the same RoPE row reordering as the weights.
StatusOr<Buffer> LoadQkvBias(const WeightSource& src, Backend* be, const std::string& p, const ModelConfig& c,
                             size_t* bytes) {
  const Part parts[] = {QkPart(p + "attn_q.bias", c.n_heads, c), QkPart(p + "attn_k.bias", c.n_kv_heads, c),
                        {p + "attn_v.bias", int64_t{c.n_kv_heads} * c.head_dim}};
  int64_t n = 0;
  for (const Part& part : parts) n += part.rows;
  std::vector<float> host(static_cast<size_t>(n));
  int64_t at = 0;
  for (const Part& part : parts) {
    if (!src.Has(part.name)) {
      return InvalidArgumentError(src.Describe() + ": missing tensor '" + part.name + "' (" + c.arch +
                                  " models carry Q, K and V biases)");
    }
    SLIM_RETURN_IF_ERROR(src.ReadF32(part.name, 1, part.rows, host.data() + at));
    InterleaveRopeRows(part, reinterpret_cast<uint8_t*>(host.data() + at), sizeof(float));
    at += part.rows;
  }
  SLIM_ASSIGN_OR_RETURN(Buffer buf, be->Alloc(DType::kF32, 1, n));
  SLIM_RETURN_IF_ERROR(be->Upload(host.data(), buf.view()));
  *bytes += static_cast<size_t>(n) * sizeof(float);
  return buf;
}

// A GGUF tensor the layer loop would not read is a part of the model this engine does not
// implement: refuse the file by that tensor's name rather than run without it.
Status CheckEveryTensorUsed(const WeightSource& src, const ModelConfig& c) {
  const gguf::GgufFile* f = src.gguf_file();
  if (f == nullptr) return OkStatus();
  std::unordered_set<std::string> used = {"token_embd.weight", "output_norm.weight", "rope_freqs.weight"};
  if (!c.tied_embeddings) used.insert("output.weight");
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char* t : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
                          "ffn_up", "ffn_down"}) {
      used.insert(p + t + ".weight");
    }
    if (c.qkv_bias) {
      for (const char* t : {"attn_q", "attn_k", "attn_v"}) used.insert(p + t + ".bias");
    }
  }
  for (const gguf::TensorInfo& t : f->tensors()) {
    if (used.count(t.name) == 0) {
      return UnimplementedError(f->path() + ": tensor '" + t.name + "' is not used by this engine's " + c.arch +
                                " layer loop; refusing to run the model without it");
    }
  }
  return OkStatus();
}

}  // namespace

StatusOr<std::unique_ptr<Model>> Model::Load(const WeightSource& src, Backend* backend) {
  const ModelConfig& c = src.config();
  SLIM_RETURN_IF_ERROR(c.Validate());
  SLIM_RETURN_IF_ERROR(CheckEveryTensorUsed(src, c));
  std::unique_ptr<Model> m(new Model(c, backend));
  // Weights are f32 on the CPU backend; other backends pick their own storage type.
  const DType wt = backend->device() == Device::kCpu ? DType::kF32 : DType::kBF16;
  const int64_t d = c.d_model, hd = c.head_dim, qd = int64_t{c.n_heads} * hd,
                kvd = int64_t{c.n_kv_heads} * hd, ff = c.d_ff;
  size_t& bytes = m->weight_bytes_;
  SLIM_ASSIGN_OR_RETURN(m->tok_embd_, LoadStacked(src, backend, {{"token_embd.weight", c.vocab_size}}, d, wt, &bytes));
  SLIM_ASSIGN_OR_RETURN(m->out_norm_, LoadStacked(src, backend, {{"output_norm.weight", 1}}, d, DType::kF32, &bytes));
  if (!c.tied_embeddings) {
    SLIM_ASSIGN_OR_RETURN(m->lm_head_, LoadStacked(src, backend, {{"output.weight", c.vocab_size}}, d, wt, &bytes));
  }
  SLIM_ASSIGN_OR_RETURN(m->lm_head_q_, LoadQuantized(src, backend,
                                                     {{c.tied_embeddings ? "token_embd.weight" : "output.weight", c.vocab_size}}, d));
  std::vector<float> factors;
  if (src.Has("rope_freqs.weight")) {
    factors.resize(static_cast<size_t>(c.rope_dim / 2));
    SLIM_RETURN_IF_ERROR(src.ReadF32("rope_freqs.weight", 1, c.rope_dim / 2, factors.data()));
  }
  m->rope_ = MakeRopeTable(c, factors);
  m->layers_.resize(static_cast<size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights& w = m->layers_[static_cast<size_t>(l)];
    SLIM_ASSIGN_OR_RETURN(w.attn_norm, LoadStacked(src, backend, {{p + "attn_norm.weight", 1}}, d, DType::kF32, &bytes));
    SLIM_ASSIGN_OR_RETURN(w.wqkv, LoadStacked(src, backend,
                                              {QkPart(p + "attn_q.weight", c.n_heads, c), QkPart(p + "attn_k.weight", c.n_kv_heads, c), {p + "attn_v.weight", kvd}},
                                              d, wt, &bytes));
    if (c.qkv_bias) {
      SLIM_ASSIGN_OR_RETURN(w.bqkv, LoadQkvBias(src, backend, p, c, &bytes));
    }
    SLIM_ASSIGN_OR_RETURN(w.wo, LoadStacked(src, backend, {{p + "attn_output.weight", d}}, qd, wt, &bytes));
    SLIM_ASSIGN_OR_RETURN(w.ffn_norm, LoadStacked(src, backend, {{p + "ffn_norm.weight", 1}}, d, DType::kF32, &bytes));
    SLIM_ASSIGN_OR_RETURN(w.w_gate_up, LoadStacked(src, backend, {{p + "ffn_gate.weight", ff}, {p + "ffn_up.weight", ff}},
                                                   d, wt, &bytes));
    SLIM_ASSIGN_OR_RETURN(w.w_down, LoadStacked(src, backend, {{p + "ffn_down.weight", d}}, ff, wt, &bytes));
    SLIM_ASSIGN_OR_RETURN(w.wqkv_q, LoadQuantized(src, backend,
                                                  {QkPart(p + "attn_q.weight", c.n_heads, c), QkPart(p + "attn_k.weight", c.n_kv_heads, c), {p + "attn_v.weight", kvd}}, d));
    SLIM_ASSIGN_OR_RETURN(w.wo_q, LoadQuantized(src, backend, {{p + "attn_output.weight", d}}, qd));
    SLIM_ASSIGN_OR_RETURN(w.w_gate_up_q, LoadQuantized(src, backend, {{p + "ffn_gate.weight", ff}, {p + "ffn_up.weight", ff}}, d));
    SLIM_ASSIGN_OR_RETURN(w.w_down_q, LoadQuantized(src, backend, {{p + "ffn_down.weight", d}}, ff));
  }
  return m;
}

size_t Model::WorkspaceBytes(int64_t n_rows, int64_t n_seqs) const {
  const ModelConfig& c = config_;
  const int64_t d = c.d_model, qd = int64_t{c.n_heads} * c.head_dim,
                kvd = int64_t{c.n_kv_heads} * c.head_dim, ff = c.d_ff;
  const size_t at = DTypeBytes(backend_->act_dtype()), f32 = 4;
  // EnsureWorkspace's buffers: x (f32), h, qkv, attn, proj, gate_up, act per row; last (f32),
  // last_norm and the logits (f32) per sequence.
  const size_t per_row = f32 * d + at * (d + qd + 2 * kvd + qd + d + 2 * ff + ff);
  const size_t per_seq = f32 * d + at * d + f32 * c.vocab_size;
  return static_cast<size_t>(n_rows) * per_row + static_cast<size_t>(n_seqs) * per_seq;
}

Status Model::EnsureWorkspace(int64_t n_rows, int64_t n_seqs) {
  const ModelConfig& c = config_;
  const int64_t d = c.d_model, qd = int64_t{c.n_heads} * c.head_dim,
                kvd = int64_t{c.n_kv_heads} * c.head_dim, ff = c.d_ff;
  // The residual stream x (and the last rows gathered from it) and the logits stay f32; the
  // other activations use the backend's activation type.
  const DType at = backend_->act_dtype(), f32 = DType::kF32;
  if (n_rows > ws_rows_) {
    const int64_t n = std::max(n_rows, ws_rows_ * 2);
    SLIM_ASSIGN_OR_RETURN(x_, backend_->Alloc(f32, n, d));
    SLIM_ASSIGN_OR_RETURN(h_, backend_->Alloc(at, n, d));
    SLIM_ASSIGN_OR_RETURN(qkv_, backend_->Alloc(at, n, qd + 2 * kvd));
    SLIM_ASSIGN_OR_RETURN(attn_, backend_->Alloc(at, n, qd));
    SLIM_ASSIGN_OR_RETURN(proj_, backend_->Alloc(at, n, d));
    SLIM_ASSIGN_OR_RETURN(gate_up_, backend_->Alloc(at, n, 2 * ff));
    SLIM_ASSIGN_OR_RETURN(act_, backend_->Alloc(at, n, ff));
    ws_rows_ = n;
  }
  if (n_seqs > ws_seqs_) {
    const int64_t n = std::max(n_seqs, ws_seqs_ * 2);
    SLIM_ASSIGN_OR_RETURN(last_, backend_->Alloc(f32, n, d));
    SLIM_ASSIGN_OR_RETURN(last_norm_, backend_->Alloc(at, n, d));
    SLIM_ASSIGN_OR_RETURN(logits_, backend_->Alloc(f32, n, c.vocab_size));
    ws_seqs_ = n;
  }
  return OkStatus();
}

// The stage of `s` at `layer` placed before (or after) attention, or null.
static const ResolvedStage* StageAt(const ForwardSeq& s, int layer, bool before_attention) {
  if (s.prune == nullptr || s.prune->after_attention == before_attention) return nullptr;
  for (const ResolvedStage& st : s.prune->stages) {
    if (st.layer == layer) return &st;
  }
  return nullptr;
}

// Whether any sequence of the batch has a pruning stage at `layer` placed before (or after) attention.
static bool PrunesAt(int layer, bool before_attention, std::span<const ForwardSeq> seqs) {
  for (const ForwardSeq& s : seqs) {
    if (StageAt(s, layer, before_attention) != nullptr) return true;
  }
  return false;
}

StatusOr<std::vector<int32_t>> Model::ScoreAndKeep(const ResolvedSchedule& s, const ResolvedStage& stage,
                                                   const AttnSeq& a, int64_t n_rows) {
  const ModelConfig& c = config_;
  const int64_t qd = int64_t{c.n_heads} * c.head_dim, kvd = int64_t{c.n_kv_heads} * c.head_dim;
  const TensorView qkv = qkv_.Rows(0, n_rows);
  std::vector<float> scores;
  SLIM_RETURN_IF_ERROR(backend_->ScoreBlocks(qkv.Cols(0, qd), qkv.Cols(qd, kvd), shape_, a.row_begin, a.n_rows,
                                             s.block_tokens, s.unit_tokens, s.query_window, s.attention_scores,
                                             &scores));
  return KeptRows(SelectBlocks(scores, stage.keep_blocks), a.n_rows, s.block_tokens);
}

Status Model::PruneAt(int layer, bool before_attention, std::span<const ForwardSeq> seqs, BatchState& b) {
  bool any = false;
  std::vector<std::vector<int32_t>> local(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    const ForwardSeq& s = seqs[i];
    const ResolvedStage* st = StageAt(s, layer, before_attention);
    if (st == nullptr) continue;
    SLIM_ASSIGN_OR_RETURN(local[i], ScoreAndKeep(*s.prune, *st, b.attn[i], b.n_rows));
    if (s.summary) s.summary->stages.push_back({layer, static_cast<int64_t>(local[i].size())});
    any = true;
  }
  if (!any) return OkStatus();
  std::vector<int32_t> rows;
  std::vector<int32_t> pos;
  rows.reserve(static_cast<size_t>(b.n_rows));
  int32_t next = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    AttnSeq& a = b.attn[i];
    if (local[i].empty()) {
      for (int32_t r = 0; r < a.n_rows; ++r) rows.push_back(a.row_begin + r);
    } else {
      for (int32_t r : local[i]) rows.push_back(a.row_begin + r);
      a.n_rows = static_cast<int32_t>(local[i].size());
    }
    a.row_begin = next;
    next += a.n_rows;
    b.last_rows[i] = next - 1;
  }
  for (int32_t r : rows) pos.push_back(b.pos[static_cast<size_t>(r)]);
  // Rows only move towards the front, so the gathers work in place.
  backend_->GatherRows(x_.Rows(0, b.n_rows), rows, x_.Rows(0, next));
  if (before_attention) backend_->GatherRows(h_.Rows(0, b.n_rows), rows, h_.Rows(0, next));
  b.pos = std::move(pos);
  b.n_rows = next;
  return OkStatus();
}

Status Model::Forward(kv::KvStore& kv, std::span<const ForwardSeq> seqs, std::vector<float>* logits) {
  // The KV store's compute protocol around the pass: waits for copies into these sequences'
  // slots before, a fence after (whatever the pass returns: queued work may touch the slots).
  std::vector<kv::SeqId> ids;
  ids.reserve(seqs.size());
  for (const ForwardSeq& s : seqs) ids.push_back(s.seq);
  SLIM_RETURN_IF_ERROR(kv.BeginCompute(ids));
  // Decode passes (a few rows per sequence, every layer, no pruning) may run as launch graphs;
  // prefill passes are a few long kernels, where launches cost nothing worth recording.
  constexpr size_t kGraphMaxRows = 8;
  bool decode = true;
  for (const ForwardSeq& s : seqs) {
    decode = decode && s.tokens.size() <= kGraphMaxRows && s.prune == nullptr && s.layer_begin == 0 &&
             EndOf(s) == config_.n_layers;
  }
  Status st;
  if (decode && backend_->BeginGraphPass()) {
    st = ForwardPass(kv, seqs, logits);
    if (const Status g = backend_->EndGraphPass(); !g.ok()) {
      // Part of the recorded work did not run; the backend records no more, and the pass runs
      // again (its KV writes land in the same slots; selection counts are taken twice).
      if (graph_failure_.ok()) graph_failure_ = g;
      st = ForwardPass(kv, seqs, logits);
    }
  } else {
    st = ForwardPass(kv, seqs, logits);
  }
  kv.EndCompute(ids);
  return st;
}

Status Model::ForwardPass(kv::KvStore& kv, std::span<const ForwardSeq> seqs, std::vector<float>* logits) {
  last_rows_ = 0;
  BatchState b;
  std::vector<ForwardSeq> cur;  // the sequences whose layers run now; b is aligned to it
  SLIM_RETURN_IF_ERROR(StartBatch(kv, seqs, &b, &cur));
  const int L = config_.n_layers;
  bool ranged = false;
  for (const ForwardSeq& s : seqs) ranged = ranged || s.layer_begin > 0 || EndOf(s) < L;
  if (b.n_rows > 0) backend_->Embed(tok_embd_.view(), b.ids, x_.Rows(0, b.n_rows));
  // Per-layer batches are known in advance only without pruning, chunks or decode selections
  // (chosen mid-pass).
  if (!b.any_prune && !ranged && !b.any_select) PrepareAllLayers(kv, cur, b);
  size_t next = cur.size();  // seqs[next...] start past layer 0, by layer
  for (int l = 0; l < L; ++l) {
    const int64_t joined = b.n_rows;
    for (; next < seqs.size() && seqs[next].layer_begin == l; ++next) Enter(seqs[next], b, cur);
    if (cur.empty()) continue;
    // Later layers get h from the previous layer's fused residual add; joining rows are normed here.
    const TensorView norm = layers_[static_cast<size_t>(l)].attn_norm.view();
    if (l == 0) {
      backend_->RmsNorm(x_.Rows(0, b.n_rows), norm, config_.rms_eps, h_.Rows(0, b.n_rows));
    } else if (b.n_rows > joined) {
      backend_->RmsNorm(x_.Rows(joined, b.n_rows - joined), norm, config_.rms_eps, h_.Rows(joined, b.n_rows - joined));
    }
    SLIM_RETURN_IF_ERROR(AttentionBlock(l, kv, cur, b));
    MlpBlock(l, b);
    if (l + 1 < L) LeaveAfter(l, b, cur);
    backend_->GraphBoundary();
  }
  SLIM_RETURN_IF_ERROR(FinishSelections(kv, b));  // a segment that chooses at the last layer
  SLIM_RETURN_IF_ERROR(ReleaseDeferred(kv, b));
  if (cur.empty()) return OkStatus();  // only chunks that end before the last layer
  return LogitsOfLastRows(b, logits);
}

namespace {

std::vector<int32_t> Iota(int64_t n, int32_t from = 0) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = from + static_cast<int32_t>(i);
  return v;
}

}  // namespace

void Model::Enter(const ForwardSeq& s, BatchState& b, std::vector<ForwardSeq>& cur) {
  const int64_t n = static_cast<int64_t>(s.positions.size());
  const int32_t r0 = static_cast<int32_t>(b.n_rows);
  backend_->GatherRows(s.carry, Iota(n), x_.Rows(r0, n));
  b.pos.insert(b.pos.end(), s.positions.begin(), s.positions.end());
  b.attn.push_back(AttnSeq{r0, static_cast<int32_t>(n), 0, nullptr});
  b.last_rows.push_back(r0 + static_cast<int32_t>(n) - 1);
  b.n_rows += n;
  b.n_seqs += 1;
  cur.push_back(s);
}

void Model::LeaveAfter(int layer, BatchState& b, std::vector<ForwardSeq>& cur) {
  bool any = false;
  for (const ForwardSeq& s : cur) any = any || EndOf(s) == layer + 1;
  if (!any) return;
  std::vector<int32_t> rows, pos;
  std::vector<ForwardSeq> keep;
  std::vector<AttnSeq> attn;
  std::vector<int32_t> last;
  int32_t next = 0;
  for (size_t i = 0; i < cur.size(); ++i) {
    const AttnSeq& a = b.attn[i];
    if (EndOf(cur[i]) == layer + 1) {
      backend_->GatherRows(x_.Rows(a.row_begin, a.n_rows), Iota(a.n_rows), cur[i].carry);
      continue;
    }
    for (int32_t r = 0; r < a.n_rows; ++r) {
      rows.push_back(a.row_begin + r);
      pos.push_back(b.pos[static_cast<size_t>(a.row_begin + r)]);
    }
    keep.push_back(cur[i]);
    attn.push_back(AttnSeq{next, a.n_rows, 0, nullptr});
    next += a.n_rows;
    last.push_back(next - 1);
  }
  // Rows only move towards the front, so the gathers work in place.
  if (next > 0) {
    backend_->GatherRows(x_.Rows(0, b.n_rows), rows, x_.Rows(0, next));
    backend_->GatherRows(h_.Rows(0, b.n_rows), rows, h_.Rows(0, next));
  }
  cur = std::move(keep);
  b.attn = std::move(attn);
  b.last_rows = std::move(last);
  b.pos = std::move(pos);
  b.n_rows = next;
  b.n_seqs = static_cast<int64_t>(cur.size());
}

StatusOr<std::vector<int32_t>> Model::KeptRowsAt(const ResolvedSchedule& schedule, const ResolvedStage& stage,
                                                 TensorView x, std::span<const int32_t> positions) {
  const ModelConfig& c = config_;
  const int64_t n = x.rows;
  if (schedule.after_attention) return UnimplementedError("chunked prefill: stages after attention are not chunked");
  if (stage.layer <= 0 || stage.layer >= c.n_layers) return InvalidArgumentError("chunked prefill: bad stage layer");
  if (static_cast<int64_t>(positions.size()) != n || x.cols != c.d_model || n == 0) {
    return InvalidArgumentError("chunked prefill: one position per row of x [n, d_model]");
  }
  SLIM_RETURN_IF_ERROR(EnsureWorkspace(n, 1));
  backend_->RmsNorm(x, layers_[static_cast<size_t>(stage.layer)].attn_norm.view(), c.rms_eps, h_.Rows(0, n));
  BatchState b;
  b.n_rows = n;
  b.n_seqs = 1;
  b.pos.assign(positions.begin(), positions.end());
  b.attn.assign(1, AttnSeq{0, static_cast<int32_t>(n), 0, nullptr});
  ResolvedSchedule one = schedule;
  one.stages = {stage};
  const ForwardSeq fs{0, {}, positions, &one, nullptr};
  ProjectForPruning(stage.layer, std::span<const ForwardSeq>(&fs, 1), b);
  return ScoreAndKeep(schedule, stage, b.attn[0], n);
}

Status Model::StartBatch(const kv::KvStore& kv, std::span<const ForwardSeq> seqs, BatchState* b,
                         std::vector<ForwardSeq>* cur) {
  const ModelConfig& c = config_;
  if (seqs.empty()) return InvalidArgumentError("forward: empty batch");
  int64_t n_rows = 0;
  int last_begin = 0;
  for (const ForwardSeq& s : seqs) {
    const int lb = s.layer_begin, le = EndOf(s);
    if (lb < 0 || lb >= le || le > c.n_layers) {
      return InvalidArgumentError("forward: bad layer range [" + std::to_string(lb) + ", " + std::to_string(le) + ")");
    }
    if (lb < last_begin) return InvalidArgumentError("forward: sequences starting past layer 0 must come last, by layer");
    last_begin = lb;
    const size_t n = s.positions.size();
    if (n == 0 || (lb == 0 ? s.tokens.size() != n : !s.tokens.empty())) {
      return InvalidArgumentError("forward: each sequence needs rows with one position each (and one token each when "
                                  "it starts at layer 0)");
    }
    for (int32_t t : s.tokens) {
      if (t < 0 || t >= c.vocab_size) {
        return InvalidArgumentError("forward: token id " + std::to_string(t) + " outside the vocabulary [0, " +
                                    std::to_string(c.vocab_size) + ")");
      }
    }
    if ((lb > 0 || le < c.n_layers) &&
        (s.carry.rows != static_cast<int64_t>(n) || s.carry.cols != c.d_model || s.carry.dtype != DType::kF32)) {
      return InvalidArgumentError("forward: a chunk's carry must be [rows, d_model] f32");
    }
    if (s.prune && !s.prune->empty()) {
      if (lb > 0 || le < c.n_layers) return InvalidArgumentError("forward: a pruned pass runs every layer");
      const kv::LayerTable* t0 = kv.TablePtr(s.seq, 0);
      if (t0 == nullptr || t0->n_tokens != 0) return FailedPreconditionError("forward: pruning needs a fresh sequence");
      b->any_prune = true;
    }
    if (s.select != nullptr && !s.select->segments().empty()) {
      if (n != 1 || s.prune != nullptr) return InvalidArgumentError("forward: a decode KV selection is for one-token decodes");
      b->any_select = true;
    }
    n_rows += static_cast<int64_t>(n);
  }
  SLIM_RETURN_IF_ERROR(EnsureWorkspace(n_rows, static_cast<int64_t>(seqs.size())));
  // Flatten the sequences that start at layer 0: ids, positions, each one's row range and last row.
  int32_t row = 0;
  for (const ForwardSeq& s : seqs) {
    if (s.layer_begin > 0) break;
    b->ids.insert(b->ids.end(), s.tokens.begin(), s.tokens.end());
    b->pos.insert(b->pos.end(), s.positions.begin(), s.positions.end());
    b->attn.push_back(AttnSeq{row, static_cast<int32_t>(s.tokens.size()), 0, nullptr});
    row += static_cast<int32_t>(s.tokens.size());
    b->last_rows.push_back(row - 1);
    if (s.summary) {
      s.summary->stages.clear();
      s.summary->prompt_tokens = static_cast<int64_t>(s.tokens.size());
    }
    cur->push_back(s);
  }
  b->n_rows = row;
  b->n_seqs = static_cast<int64_t>(cur->size());
  return OkStatus();
}

void Model::PrepareAllLayers(const kv::KvStore& kv, std::span<const ForwardSeq> seqs, const BatchState& b) {
  // Without pruning or chunks every layer sees the same rows: hand the backend all layers' batches now.
  std::vector<std::vector<AttnSeq>> layers(static_cast<size_t>(config_.n_layers), b.attn);
  for (int l = 0; l < config_.n_layers; ++l) {
    for (size_t i = 0; i < seqs.size(); ++i) {
      AttnSeq& a = layers[static_cast<size_t>(l)][i];
      a.table = kv.TablePtr(seqs[i].seq, l);
      if (a.table == nullptr) return;  // reported by the layer loop
      a.n_past = a.table->n_tokens;
    }
  }
  backend_->PrepareLayers(kv, layers, shape_);
}

void Model::ProjectForPruning(int layer, std::span<const ForwardSeq> seqs, BatchState& b) {
  // The block scores read the rotated k of every row and q of each scored sequence's query
  // window only: project and rotate just those (8B model, 32K rows pruned to 8K: 42% of the QKV
  // product over all rows); q, k and v of the kept rows follow after pruning.
  const ModelConfig& c = config_;
  const int64_t qd = int64_t{c.n_heads} * c.head_dim, kvd = int64_t{c.n_kv_heads} * c.head_dim;
  const TensorView h = h_.Rows(0, b.n_rows), qkv = qkv_.Rows(0, b.n_rows);
  const LayerWeights& w = layers_[static_cast<size_t>(layer)];
  const TensorView wqkv = w.wqkv.view();
  backend_->MatMul(h, wqkv.Rows(qd, kvd), qkv.Cols(qd, kvd));
  if (!w.bqkv.empty()) backend_->AddBias(qkv.Cols(qd, kvd), w.bqkv.view().Cols(qd, kvd));
  backend_->Rope(qkv.Cols(qd, kvd), c.n_kv_heads, c.head_dim, b.pos, rope_);
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (StageAt(seqs[i], layer, /*before_attention=*/true) == nullptr) continue;
    const AttnSeq& a = b.attn[i];
    const int32_t n_win = std::min(a.n_rows, seqs[i].prune->query_window);
    const int64_t r0 = a.row_begin + a.n_rows - n_win;
    const TensorView q_win = qkv.Rows(r0, n_win).Cols(0, qd);
    backend_->MatMul(h.Rows(r0, n_win), wqkv.Rows(0, qd), q_win);
    if (!w.bqkv.empty()) backend_->AddBias(q_win, w.bqkv.view().Cols(0, qd));
    backend_->Rope(q_win, c.n_heads, c.head_dim, std::span<const int32_t>(b.pos).subspan(r0, n_win), rope_);
  }
}

void Model::TailAttention(const kv::KvStore& kv, TensorView q, BatchState& b) {
  // Past its KV write the last layer runs on each sequence's last row alone: no other row of it
  // reaches the logits (as llama.cpp does).
  // A decode under a KV budget batched with a prompt reads its chosen blocks here too.
  const int64_t n_seqs = b.n_seqs;
  std::vector<AttnSeq> tail(b.any_select ? b.attn_view : b.attn);
  for (int64_t i = 0; i < n_seqs; ++i) {
    AttnSeq& a = tail[static_cast<size_t>(i)];
    a.n_past += a.n_rows - 1;  // the last row sees every key, as in the full causal pass
    a.n_rows = 1;
    a.row_begin = static_cast<int32_t>(i);
  }
  const TensorView q_tail = gate_up_.Rows(0, n_seqs).Cols(0, q.cols);  // free until the MLP
  backend_->GatherRows(q, b.last_rows, q_tail);
  backend_->GatherRows(x_.Rows(0, b.n_rows), b.last_rows, last_.Rows(0, n_seqs));
  backend_->Attention(kv, tail, shape_, q_tail, attn_.Rows(0, n_seqs));
  b.tail_done = true;
}

Status Model::AttentionBlock(int l, kv::KvStore& kv, std::span<const ForwardSeq> seqs, BatchState& b) {
  const ModelConfig& c = config_;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  const int64_t qd = int64_t{c.n_heads} * c.head_dim, kvd = int64_t{c.n_kv_heads} * c.head_dim;
  // Layers without a stage of their own take the fused paths (RoPE + KV write, residual add +
  // RMSNorm) also when pruning happens elsewhere in the stack.
  const bool prune_before = b.any_prune && PrunesAt(l, /*before_attention=*/true, seqs);
  const bool prune_after = b.any_prune && PrunesAt(l, /*before_attention=*/false, seqs);
  if (prune_before) {
    ProjectForPruning(l, seqs, b);
    SLIM_RETURN_IF_ERROR(PruneAt(l, /*before_attention=*/true, seqs, b));
  }
  const TensorView qkv = qkv_.Rows(0, b.n_rows);
  backend_->MatMulQ(h_.Rows(0, b.n_rows), w.wqkv.view(), &w.wqkv_q, qkv);
  if (!w.bqkv.empty()) backend_->AddBias(qkv, w.bqkv.view());
  SLIM_RETURN_IF_ERROR(FinishSelections(kv, b));  // the previous layer's choices, before this layer's wait
  kv.AwaitLayer(l);  // prefetched KV of this layer has landed (device-side wait)
  for (size_t i = 0; i < seqs.size(); ++i) {
    AttnSeq& a = b.attn[i];
    a.table = kv.TablePtr(seqs[i].seq, l);
    if (a.table == nullptr) return NotFoundError("forward: sequence has no KV table");
    a.n_past = a.table->n_tokens;
    if ((a.n_past + a.n_rows + kv.layout().block_tokens - 1) / kv.layout().block_tokens > a.table->capacity()) {
      return FailedPreconditionError("forward: KV not reserved for layer " + std::to_string(l));
    }
  }
  backend_->RopeWriteKv(kv, b.attn, shape_, qkv.Cols(0, qd), qkv.Cols(qd, kvd), qkv.Cols(qd + kvd, kvd), b.pos,
                        rope_);
  if (b.any_select) SLIM_RETURN_IF_ERROR(ApplySelections(l, kv, seqs, qkv.Cols(0, qd), b));
  // Not with a stage after attention at the last layer.
  if (l + 1 == c.n_layers && !prune_after && b.n_rows > b.n_seqs) {
    TailAttention(kv, qkv.Cols(0, qd), b);
  } else if (b.any_select) {
    backend_->Attention(kv, b.attn_view, shape_, qkv.Cols(0, qd), attn_.Rows(0, b.n_rows));
  } else {
    backend_->Attention(kv, b.attn, shape_, qkv.Cols(0, qd), attn_.Rows(0, b.n_rows));
  }
  for (size_t i = 0; i < seqs.size(); ++i) SLIM_RETURN_IF_ERROR(kv.Append(seqs[i].seq, l, b.attn[i].n_rows));
  const TensorView x = b.tail_done ? last_.Rows(0, b.n_seqs) : x_.Rows(0, b.n_rows);
  const int64_t n_out = x.rows;  // rows that go on through this layer
  backend_->MatMulQ(attn_.Rows(0, n_out), w.wo.view(), &w.wo_q, proj_.Rows(0, n_out));
  if (prune_after) {
    backend_->Add(x, proj_.Rows(0, n_out));
    SLIM_RETURN_IF_ERROR(PruneAt(l, /*before_attention=*/false, seqs, b));
    backend_->RmsNorm(x_.Rows(0, b.n_rows), w.ffn_norm.view(), c.rms_eps, h_.Rows(0, b.n_rows));
  } else {
    backend_->AddRmsNorm(x, proj_.Rows(0, n_out), w.ffn_norm.view(), c.rms_eps, h_.Rows(0, n_out));
  }
  return OkStatus();
}

void Model::MlpBlock(int l, const BatchState& b) {
  const ModelConfig& c = config_;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  const TensorView x = b.tail_done ? last_.Rows(0, b.n_seqs) : x_.Rows(0, b.n_rows);
  const int64_t n = x.rows;
  const TensorView h = h_.Rows(0, n), gate_up = gate_up_.Rows(0, n), act = act_.Rows(0, n), out = proj_.Rows(0, n);
  backend_->Mlp(h, {w.w_gate_up.view(), &w.w_gate_up_q, w.w_down.view(), &w.w_down_q}, {gate_up, act}, out);
  if (l + 1 < c.n_layers) {
    backend_->AddRmsNorm(x, out, layers_[static_cast<size_t>(l) + 1].attn_norm.view(), c.rms_eps, h);
  } else {
    backend_->Add(x, out);
  }
}

Status Model::LogitsOfLastRows(const BatchState& b, std::vector<float>* logits) {
  const ModelConfig& c = config_;
  const TensorView last = last_.Rows(0, b.n_seqs), last_norm = last_norm_.Rows(0, b.n_seqs),
                   lg = logits_.Rows(0, b.n_seqs);
  if (!b.tail_done) backend_->GatherRows(x_.Rows(0, b.n_rows), b.last_rows, last);
  backend_->RmsNorm(last, out_norm_.view(), c.rms_eps, last_norm);
  backend_->MatMulQ(last_norm, lm_head_.empty() ? tok_embd_.view() : lm_head_.view(), &lm_head_q_, lg);
  last_rows_ = b.n_seqs;
  if (logits == nullptr) return OkStatus();  // left on the backend (SummarizeLast, DownloadLogits)
  logits->resize(static_cast<size_t>(b.n_seqs * c.vocab_size));
  return backend_->Download(lg, logits->data());
}

Status Model::SummarizeLast(std::span<const SummaryRequest> requests, std::vector<LogitsSummary>* summaries) {
  if (static_cast<int64_t>(requests.size()) != last_rows_) {
    return InvalidArgumentError("forward: one summary request per sequence of the last pass");
  }
  return backend_->SummarizeLogits(logits_.Rows(0, last_rows_), requests, summaries);
}

Status Model::DownloadLogits(int64_t i, std::vector<float>* row) {
  if (i < 0 || i >= last_rows_) return OutOfRangeError("forward: no logits row " + std::to_string(i));
  row->resize(static_cast<size_t>(config_.vocab_size));
  return backend_->Download(logits_.Rows(i, 1), row->data());
}

}  // namespace slim
