// Engine: loading, sequence lifecycle over the KV store, and the Generate loop.
#include "engine/engine.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "engine/gguf/gguf_file.h"
#include "engine/tokenizer/hf_tokenizer.h"

namespace slim {
namespace {

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// Memory this process may use: physical RAM, or less where a cgroup (a container's memory
// limit) says so, v2 or v1.
static double MemoryLimitBytes() {
  double limit = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
  for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream f(path);
    double v = 0;
    if (f >> v && v > 0 && v < limit) limit = v;  // "max" (no limit) does not parse
  }
  return limit;
}

// The tiers' sizes from EngineOptions and the machine (EngineOptions documents the rules).
static Status SizeKvTiers(const EngineOptions& o, const Model& model, kv::TierMemory& memory, Device device,
                   int64_t context, kv::KvStoreOptions* ko) {
  const kv::KvLayout& L = ko->layout;
  const double gib = 1024.0 * 1024.0 * 1024.0;
  const double ram = MemoryLimitBytes();
  auto blocks_of_bytes = [&](double bytes) { return static_cast<int64_t>(bytes / static_cast<double>(L.BlockBytes())); };
  // Tokens per layer summed over sequences; one spare block per layer for ragged tails.
  auto blocks_of_tokens = [&](int64_t tokens) { return (L.BlocksFor(tokens) + 1) * L.n_layers; };
  if (o.kv_tokens < 0 || o.kv_gib < 0 || o.gpu_memory_fraction < 0 || o.gpu_memory_fraction > 1 ||
      o.host_kv_tokens < 0) {
    return InvalidArgumentError("KV sizing: kv_tokens, kv_gib and host_kv_tokens must be >= 0, "
                                "gpu_memory_fraction in [0, 1]");
  }
  if (o.kv_tokens > 0) {
    ko->gpu_blocks = blocks_of_tokens(o.kv_tokens);
  } else if (o.kv_gib > 0) {
    ko->gpu_blocks = blocks_of_bytes(o.kv_gib * gib);
  } else if (o.gpu_memory_fraction > 0 && device == Device::kCpu) {
    ko->gpu_blocks = blocks_of_bytes(0.10 * ram);
  } else if (o.gpu_memory_fraction > 0) {
    // Free memory now (weights loaded) less the activations of the longest prompt and the
    // hidden states a chunked pruned prefill of it carries between steps.
    const double free_b = static_cast<double>(memory.GpuFreeBytes());
    const double ws = static_cast<double>(model.WorkspaceBytes(context, 64)) +
                      static_cast<double>(context) * model.config().d_model * sizeof(float);
    ko->gpu_blocks = blocks_of_bytes((free_b - ws) * o.gpu_memory_fraction);
    if (ko->gpu_blocks < blocks_of_tokens(1)) {
      return ResourceExhaustedError("KV sizing: " + std::to_string(static_cast<int64_t>(free_b / 1048576)) +
                                    " MiB free on the device, the workspace for " + std::to_string(context) +
                                    " tokens takes " + std::to_string(static_cast<int64_t>(ws / 1048576)) +
                                    " MiB: no room for a KV cache (lower the context length or set --kv-tokens)");
    }
  } else {
    ko->gpu_blocks = blocks_of_tokens(context);
  }
  if (o.host_kv_tokens > 0) {
    ko->host_blocks = blocks_of_tokens(o.host_kv_tokens);
  } else if (o.host_kv_gib != 0) {
    ko->host_blocks = blocks_of_bytes(o.host_kv_gib < 0 ? 0.25 * ram : o.host_kv_gib * gib);
  }
  // Pinning is slow on CUDA (about 0.5 s per GiB): 1 GiB chunks in the background.
  if (device != Device::kCpu) ko->host_chunk_blocks = std::max<int64_t>(1, blocks_of_bytes(gib));
  return OkStatus();
}

Engine::~Engine() = default;

StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& o) {
  if (o.model.empty()) return InvalidArgumentError("engine: no model given");
  if (o.block_tokens <= 0 || o.block_tokens > 1024) return InvalidArgumentError("engine: block_tokens out of range");
  std::unique_ptr<Engine> e(new Engine());
  SLIM_ASSIGN_OR_RETURN(e->backend_, CreateBackend(o.backend));
  SLIM_ASSIGN_OR_RETURN(e->source_, OpenWeights(o.model, o.synthetic_seed));
  const gguf::GgufFile* f = e->source_->gguf_file();
  std::unique_ptr<gguf::GgufFile> vocab_file;
  // The tokenizer: a Hugging Face checkpoint's tokenizer.json, the GGUF's own metadata, or for
  // synthetic weights an explicit vocabulary GGUF.
  const int vocab_size = e->source_->config().vocab_size;
  std::optional<VocabData> vocab_data;
  if (!o.tokenizer.empty() && (f != nullptr || !e->source_->hf_checkpoint_dir().empty())) {
    return InvalidArgumentError("engine: a tokenizer file is for synthetic models; " + o.model +
                                " has its own vocabulary");
  }
  const std::string hf_dir = e->source_->hf_checkpoint_dir();
  if (!hf_dir.empty() && std::filesystem::exists(std::filesystem::path(hf_dir) / "tokenizer.json")) {
    // (A checkpoint without tokenizer.json runs token-id prompts only, as synthetic weights do;
    // text and chat requests are refused naming the missing tokenizer.)
    SLIM_ASSIGN_OR_RETURN(vocab_data, VocabFromHfDir(hf_dir));
    // Checkpoints often pad the embedding table past the tokenizer's ids; more ids than rows
    // could not be embedded.
    if (vocab_data->tokens.size() > static_cast<size_t>(vocab_size)) {
      return InvalidArgumentError(hf_dir + ": the tokenizer has " + std::to_string(vocab_data->tokens.size()) +
                                  " tokens but the model has " + std::to_string(vocab_size) + " embedding rows");
    }
  } else if (!o.tokenizer.empty()) {
    SLIM_ASSIGN_OR_RETURN(vocab_file, gguf::GgufFile::Open(o.tokenizer));
    SLIM_ASSIGN_OR_RETURN(vocab_data, VocabFromGguf(*vocab_file));
    if (vocab_data->tokens.size() != static_cast<size_t>(vocab_size)) {
      return InvalidArgumentError(vocab_file->path() + ": the vocabulary has " +
                                  std::to_string(vocab_data->tokens.size()) + " tokens but " + o.model + " has " +
                                  std::to_string(vocab_size) + " embedding rows");
    }
  } else if (f != nullptr) {
    SLIM_ASSIGN_OR_RETURN(vocab_data, VocabFromGguf(*f));
  }
  if (vocab_data.has_value()) {
    VocabData vocab = std::move(*vocab_data);
    const ChatTemplateOptions co = ChatTemplateOptionsFor(vocab);
    std::string tmpl = vocab.chat_template;
    SLIM_ASSIGN_OR_RETURN(e->tokenizer_, Tokenizer::Create(std::move(vocab)));
    SLIM_RETURN_IF_ERROR(e->LoadChatTemplate(o.chat_template_file, tmpl, co));
    e->chat_content_specials_ = o.chat_content_specials;
  } else if (!o.chat_template_file.empty()) {
    return InvalidArgumentError("engine: --chat-template needs a tokenizer; " + o.model + " has none");
  } else {
    e->chat_status_ = FailedPreconditionError("this model has no tokenizer (synthetic weights, or a checkpoint without one)");
  }
  SLIM_ASSIGN_OR_RETURN(e->model_, Model::Load(*e->source_, e->backend_.get()));
  kv::KvStoreOptions ko;
  ko.layout = e->model_->KvLayoutFor(o.block_tokens);
  const int64_t trained = e->model_->config().context_length;
  if (o.context_length < 0 || o.context_length > 4 * trained) {
    return InvalidArgumentError("engine: context_length must be in [0, " + std::to_string(4 * trained) + "], got " +
                                std::to_string(o.context_length));
  }
  e->context_length_ = o.context_length > 0 ? o.context_length : trained;
  SLIM_RETURN_IF_ERROR(e->model_->config().CheckSlidingWindow(e->context_length_).WithPrefix(e->source_->Describe()));
  SLIM_ASSIGN_OR_RETURN(e->kv_memory_, e->backend_->CreateKvMemory());
  SLIM_RETURN_IF_ERROR(SizeKvTiers(o, *e->model_, *e->kv_memory_, e->backend_->device(), e->context_length_, &ko));
  ko.memory = e->kv_memory_.get();
  SLIM_ASSIGN_OR_RETURN(e->kv_, kv::KvStore::Create(ko));
  if (o.default_pruning.empty()) {
    e->default_pruning_ = DefaultScheduleFor(e->model_->config().name, e->model_->config().n_layers);
  } else {
    SLIM_ASSIGN_OR_RETURN(e->default_pruning_, PruningConfig::Parse(o.default_pruning));
  }
  e->default_pruning_.block_tokens = o.block_tokens;
  if (o.decode_kv_budget < 0) return InvalidArgumentError("engine: decode_kv_budget must be >= 0");
  if (!(o.decode_kv_gamma >= 0.0 && o.decode_kv_gamma <= 1.0)) {
    return InvalidArgumentError("engine: decode_kv_gamma must be in [0, 1]");
  }
  e->decode_kv_budget_ = o.decode_kv_budget;
  e->decode_kv_gamma_ = o.decode_kv_gamma;
  if (o.decode_kv_select_layer < 0 || o.decode_kv_select_layer >= e->model_->config().n_layers) {
    return InvalidArgumentError("engine: decode_kv_select_layer must be in [0, " +
                                std::to_string(e->model_->config().n_layers) + ")");
  }
  e->decode_kv_select_layer_ = o.decode_kv_select_layer;
  e->decode_kv_score_ = o.decode_kv_score;
  if (o.decode_kv_resident_layers < 0) return InvalidArgumentError("engine: decode_kv_resident_layers must be >= 0");
  e->decode_kv_resident_layers_ = o.decode_kv_resident_layers;
  SLIM_RETURN_IF_ERROR(e->default_pruning_.Validate(e->model_->config().n_layers).WithPrefix("default pruning schedule"));
  return e;
}

std::string Engine::Describe() const {
  return source_->Describe() + " on " + backend_->Describe();
}

StatusOr<std::vector<int32_t>> Engine::Tokenize(std::string_view text, bool parse_special) const {
  if (!tokenizer_) return FailedPreconditionError("this model has no tokenizer (synthetic weights, or a checkpoint without one)");
  EncodeOptions eo;
  eo.add_bos = tokenizer_->vocab().add_bos;
  eo.parse_special = parse_special;
  return tokenizer_->Encode(text, eo);
}

Status Engine::LoadChatTemplate(const std::string& file, const std::string& model_template,
                                const ChatTemplateOptions& co) {
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return NotFoundError("--chat-template " + file + ": cannot read the file");
    std::stringstream ss;
    ss << in.rdbuf();
    auto ct = ChatTemplate::Create(ss.str(), co);
    if (!ct.ok()) return ct.status().WithPrefix("--chat-template " + file);
    chat_ = *std::move(ct);
    return OkStatus();
  }
  if (model_template.empty()) {
    chat_status_ = FailedPreconditionError("this model has no chat template");
    return OkStatus();
  }
  auto ct = ChatTemplate::Create(model_template, co);
  if (ct.ok()) {
    chat_ = *std::move(ct);
  } else {
    // Plain completions keep working; chat requests get this error.
    chat_status_ = ct.status().WithPrefix("the model's chat template cannot be used");
  }
  return OkStatus();
}

StatusOr<std::vector<int32_t>> Engine::TokenizeChat(const std::vector<ChatMessage>& messages) const {
  if (!chat_) return chat_status_;
  if (!tokenizer_) return FailedPreconditionError("this model has no tokenizer (synthetic weights, or a checkpoint without one)");
  ChatEncodeOptions co;
  co.content_specials = chat_content_specials_;
  return EncodeChat(*tokenizer_, *chat_, messages, co);
}

int32_t Engine::SequenceLength(kv::SeqId seq) const {
  auto it = seq_len_.find(seq);
  return it == seq_len_.end() ? -1 : it->second;
}

size_t Engine::SequenceKvBytes(kv::SeqId seq) const {
  size_t tokens = 0;
  for (int l = 0; l < config().n_layers; ++l) tokens += static_cast<size_t>(kv_->Tokens(seq, l));
  return tokens * kv_->layout().TokenBytes();
}

namespace {

// The schedule a request asks for, resolved for its prompt (empty = dense).
StatusOr<ResolvedSchedule> ResolveRequest(const PruningRequest& req, const PruningConfig& def, int n_layers,
                                          int block_tokens, int64_t prompt_tokens) {
  if (req.mode == PruningMode::kOff) return ResolvedSchedule{};
  const PruningConfig* cfg = &def;
  if (req.mode == PruningMode::kExplicit) {
    SLIM_RETURN_IF_ERROR(req.config.Validate(n_layers));
    if (req.config.block_tokens != block_tokens) {
      return InvalidArgumentError("pruning: block size must equal the KV block size (" + std::to_string(block_tokens) +
                                  ")");
    }
    cfg = &req.config;
  }
  return ResolveSchedule(*cfg, prompt_tokens);
}

}  // namespace

StatusOr<int64_t> Engine::PrefillBlocks(int64_t prompt_tokens, const PruningRequest& pruning) const {
  const ModelConfig& c = config();
  SLIM_ASSIGN_OR_RETURN(ResolvedSchedule rs, ResolveRequest(pruning, default_pruning_, c.n_layers,
                                                            kv_->layout().block_tokens, prompt_tokens));
  int64_t blocks = 0;
  for (int64_t t : TokensPerLayer(rs, prompt_tokens, c.n_layers)) blocks += kv_->layout().BlocksFor(t);
  return blocks;
}

StatusOr<int64_t> Engine::PrefillWork(int64_t prompt_tokens, const PruningRequest& pruning) const {
  const ModelConfig& c = config();
  SLIM_ASSIGN_OR_RETURN(ResolvedSchedule rs, ResolveRequest(pruning, default_pruning_, c.n_layers,
                                                            kv_->layout().block_tokens, prompt_tokens));
  int64_t row_layers = 0;
  for (int64_t t : TokensPerLayer(rs, prompt_tokens, c.n_layers)) row_layers += t;
  return (row_layers + c.n_layers - 1) / c.n_layers;
}

// A prompt being prefilled by Step. Work is counted in row-layers (a row through one layer).
struct Engine::Partial {
  int64_t n = 0;                 // prompt tokens
  ResolvedSchedule rs;
  // Segments [bounds[s], bounds[s + 1]): layer 0, each pruning stage's layer, n_layers.
  std::vector<int> bounds;
  int segment = 0;
  std::vector<int32_t> pos;      // prompt positions of the current segment's rows
  int64_t done = 0;              // rows of the current segment run
  Buffer carry;                  // a pruned prompt run in chunks: [n, d_model] f32 hidden states
  PruningSummary summary;
  int64_t work_total = 0, work_done = 0;
  int64_t decode_kv_budget = 0;  // resolved: the request's or the engine's
  std::chrono::steady_clock::time_point t0;
};

// A row of a forward pass: its sequence's sampling (sampler null: none) and where results go.
struct Engine::PassRow {
  SampleSpec sample;
  bool want_logits = false;
  StepOutput* out = nullptr;
};

int64_t Engine::PrefillWorkLeft(kv::SeqId seq) const {
  auto it = partial_.find(seq);
  if (it == partial_.end()) return 0;
  const int L = config().n_layers;
  return (it->second->work_total + L - 1) / L - (it->second->work_done + L - 1) / L;
}

StatusOr<PrefillResult> Engine::Prefill(kv::SeqId seq, std::span<const int32_t> prompt,
                                        const PruningRequest& pruning) {
  return PrefillWith(seq, prompt, pruning, {});
}

StatusOr<PrefillResult> Engine::PrefillAndSample(kv::SeqId seq, std::span<const int32_t> prompt,
                                                 const SampleSpec& sample, const PruningRequest& pruning) {
  return PrefillWith(seq, prompt, pruning, std::span<const SampleSpec>(&sample, 1));
}

StatusOr<PrefillResult> Engine::PrefillWith(kv::SeqId seq, std::span<const int32_t> prompt,
                                            const PruningRequest& pruning, std::span<const SampleSpec> samples) {
  StepItem item;
  item.kind = StepItem::Kind::kPrefill;
  item.seq = seq;
  item.tokens = prompt;
  item.pruning = &pruning;
  if (!samples.empty()) item.sample = samples[0];
  std::vector<StepOutput> out;
  SLIM_RETURN_IF_ERROR(Step(std::span<const StepItem>(&item, 1), 0, &out));
  if (!out[0].status.ok()) return out[0].status;
  PrefillResult r = std::move(out[0].prefill);
  r.logits = std::move(out[0].logits);
  r.sampled = std::move(out[0].sampled);
  return r;
}

Status Engine::Decode(std::span<const DecodeItem> items, std::vector<float>* logits) {
  return DecodeWith(items, {}, logits, nullptr);
}

Status Engine::DecodeAndSample(std::span<const DecodeItem> items, std::span<const SampleSpec> samples,
                               std::vector<SampleResult>* sampled) {
  if (samples.size() != items.size()) return InvalidArgumentError("decode: one sampler per item");
  return DecodeWith(items, samples, nullptr, sampled);
}

Status Engine::DecodeWith(std::span<const DecodeItem> items, std::span<const SampleSpec> samples,
                          std::vector<float>* logits, std::vector<SampleResult>* sampled) {
  if (items.empty()) return InvalidArgumentError("decode: empty batch");
  std::vector<StepItem> step(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    step[i].seq = items[i].seq;
    step[i].tokens = std::span<const int32_t>(&items[i].token, 1);
    if (!samples.empty()) step[i].sample = samples[i];
  }
  std::vector<StepOutput> out;
  SLIM_RETURN_IF_ERROR(Step(step, 0, &out));
  for (const StepOutput& o : out) SLIM_RETURN_IF_ERROR(o.status);
  if (logits) {
    logits->clear();
    for (const StepOutput& o : out) logits->insert(logits->end(), o.logits.begin(), o.logits.end());
  }
  if (sampled) {
    sampled->resize(out.size());
    for (size_t i = 0; i < out.size(); ++i) (*sampled)[i] = std::move(out[i].sampled);
  }
  return OkStatus();
}

Status Engine::StartPrefill(const StepItem& item, Partial* p) {
  const ModelConfig& c = config();
  const std::span<const int32_t> prompt = item.tokens;
  if (prompt.empty()) return InvalidArgumentError("prompt is empty");
  if (static_cast<int64_t>(prompt.size()) > context_length_) {
    return InvalidArgumentError("prompt has " + std::to_string(prompt.size()) + " tokens, over the context length " +
                                std::to_string(context_length_));
  }
  const int64_t n = static_cast<int64_t>(prompt.size());
  static const PruningRequest kDense;
  SLIM_ASSIGN_OR_RETURN(p->rs, ResolveRequest(item.pruning ? *item.pruning : kDense, default_pruning_, c.n_layers,
                                              kv_->layout().block_tokens, n));
  const int64_t budget = item.pruning ? item.pruning->decode_kv_budget : -1;
  if (budget < -1) return InvalidArgumentError("decode_kv_budget: must be >= 0 (or -1, the server default)");
  p->decode_kv_budget = budget < 0 ? decode_kv_budget_ : budget;
  const std::vector<int64_t> per_layer = TokensPerLayer(p->rs, n, c.n_layers);
  SLIM_RETURN_IF_ERROR(kv_->AddSequence(item.seq));
  if (Status s = kv_->ReserveAll(item.seq, per_layer); !s.ok()) {
    (void)kv_->Free(item.seq);
    return s;
  }
  p->n = n;
  p->bounds.push_back(0);
  for (const ResolvedStage& st : p->rs.stages) p->bounds.push_back(st.layer);
  p->bounds.push_back(c.n_layers);
  p->pos.resize(static_cast<size_t>(n));
  for (size_t i = 0; i < p->pos.size(); ++i) p->pos[i] = static_cast<int32_t>(i);
  for (int64_t t : per_layer) p->work_total += t;
  p->summary.prompt_tokens = n;
  p->t0 = std::chrono::steady_clock::now();
  return OkStatus();
}

Status Engine::ReserveDecodes(std::span<const StepItem> items, std::span<const size_t> decodes) {
  const ModelConfig& c = config();
  // One more token per layer for every sequence, all or nothing.
  std::vector<std::vector<int64_t>> per_layer(decodes.size(), std::vector<int64_t>(static_cast<size_t>(c.n_layers)));
  int64_t need = 0;
  for (size_t j = 0; j < decodes.size(); ++j) {
    const StepItem& it = items[decodes[j]];
    if (it.tokens.size() != 1) return InvalidArgumentError("decode: one token per sequence");
    auto sl = seq_len_.find(it.seq);
    if (sl == seq_len_.end()) return NotFoundError("decode: no live sequence " + std::to_string(it.seq));
    if (sl->second + 1 > context_length_) {
      return OutOfRangeError("decode: sequence " + std::to_string(it.seq) + " reached the context length");
    }
    for (int l = 0; l < c.n_layers; ++l) per_layer[j][static_cast<size_t>(l)] = kv_->Tokens(it.seq, l) + 1;
    need += kv_->BlocksNeeded(it.seq, per_layer[j]);
  }
  if (need > kv_->FreeBlocks()) {
    return ResourceExhaustedError("decode: " + std::to_string(need) + " KV blocks needed, " +
                                  std::to_string(kv_->FreeBlocks()) + " free");
  }
  for (size_t j = 0; j < decodes.size(); ++j) SLIM_RETURN_IF_ERROR(kv_->ReserveAll(items[decodes[j]].seq, per_layer[j]));
  return OkStatus();
}

Status Engine::Step(std::span<const StepItem> items, int64_t prefill_budget, std::vector<StepOutput>* out) {
  const ModelConfig& c = config();
  const int64_t L = c.n_layers;
  out->assign(items.size(), StepOutput{});
  {
    std::vector<kv::SeqId> seen;
    for (const StepItem& it : items) seen.push_back(it.seq);
    std::sort(seen.begin(), seen.end());
    if (std::adjacent_find(seen.begin(), seen.end()) != seen.end()) {
      return InvalidArgumentError("step: a sequence appears twice");
    }
  }
  // The budget in row-layers; unlimited when 0.
  int64_t budget = prefill_budget > 0 ? prefill_budget * L : std::numeric_limits<int64_t>::max();

  std::vector<size_t> decodes;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].kind == StepItem::Kind::kDecode) decodes.push_back(i);
  }
  const Status reserved = decodes.empty() ? OkStatus() : ReserveDecodes(items, decodes);

  // One batched pass: decodes, whole prefills and chunks. Chunks of a pruned prompt's later
  // segments start past layer 0 and go last, by layer (Model::Forward's order).
  std::vector<PassEntry> entries;
  std::vector<int32_t> decode_pos(items.size());
  for (size_t i : decodes) {
    if (!reserved.ok()) {
      (*out)[i].status = reserved;
      continue;
    }
    const StepItem& it = items[i];
    decode_pos[i] = seq_len_[it.seq];
    PassEntry e{i, ForwardSeq{it.seq, it.tokens, std::span<const int32_t>(&decode_pos[i], 1)}, 1, 0, true};
    if (auto sel = selections_.find(it.seq); sel != selections_.end()) {
      e.fs.select = &sel->second;
      e.fs.select_stats = &selection_stats_;
    }
    entries.push_back(e);
  }
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].kind != StepItem::Kind::kPrefill || budget <= 0) continue;
    if (std::optional<PassEntry> e = PlanPrefill(i, items[i], &budget, &(*out)[i])) entries.push_back(*e);
  }
  if (entries.empty()) return OkStatus();
  std::stable_sort(entries.begin(), entries.end(),
                   [](const PassEntry& x, const PassEntry& y) { return x.fs.layer_begin < y.fs.layer_begin; });
  std::vector<ForwardSeq> fs;
  std::vector<PassRow> rows;  // the sequences that reach the last layer, in pass order
  for (const PassEntry& e : entries) {
    fs.push_back(e.fs);
    if (e.fs.layer_end == 0 || e.fs.layer_end == L) {
      const StepItem& it = items[e.item];
      rows.push_back(PassRow{e.completes ? it.sample : SampleSpec{}, e.completes && it.sample.sampler == nullptr,
                             &(*out)[e.item]});
    }
  }
  const Status st = RunPass([&](std::vector<float>* lg) { return model_->Forward(*kv_, fs, lg); }, rows);
  for (const PassEntry& e : entries) AfterPass(e, items[e.item], st, &(*out)[e.item]);
  return OkStatus();
}

std::optional<Engine::PassEntry> Engine::PlanPrefill(size_t i, const StepItem& it, int64_t* budget, StepOutput* o) {
  const ModelConfig& c = config();
  const int L = c.n_layers;
  auto found = partial_.find(it.seq);
  if (found == partial_.end()) {
    if (seq_len_.count(it.seq)) {
      o->status = Status(StatusCode::kAlreadyExists, "sequence " + std::to_string(it.seq) + " is live");
      return std::nullopt;
    }
    auto p = std::make_unique<Partial>();
    o->status = StartPrefill(it, p.get());
    if (!o->status.ok()) return std::nullopt;
    found = partial_.emplace(it.seq, std::move(p)).first;
  }
  Partial& p = *found->second;
  if (static_cast<int64_t>(it.tokens.size()) != p.n) {
    o->status = InvalidArgumentError("prefill: the prompt changed between steps");
    return std::nullopt;
  }
  const int64_t left = p.work_total - p.work_done;
  PassEntry e{i, ForwardSeq{it.seq}};
  if (p.work_done == 0 && (left <= *budget || p.rs.after_attention)) {
    // The whole prompt in this pass (stages after attention are never chunked).
    e.fs.tokens = it.tokens;
    e.fs.positions = p.pos;
    e.fs.prune = p.rs.empty() ? nullptr : &p.rs;
    e.fs.summary = p.rs.empty() ? nullptr : &p.summary;
    e.rows = p.n;
    e.work = p.work_total;
    e.completes = true;
  } else {
    // A chunk of at least one row of the current segment.
    const int lb = p.bounds[static_cast<size_t>(p.segment)], le = p.bounds[static_cast<size_t>(p.segment) + 1];
    const int64_t layers = le - lb, alive = static_cast<int64_t>(p.pos.size());
    e.rows = std::min(alive - p.done, std::max<int64_t>(1, *budget / layers));
    e.work = e.rows * layers;
    e.completes = le == L && p.done + e.rows == alive;
    if (lb == 0) e.fs.tokens = it.tokens.subspan(static_cast<size_t>(p.done), static_cast<size_t>(e.rows));
    e.fs.positions = std::span<const int32_t>(p.pos).subspan(static_cast<size_t>(p.done), static_cast<size_t>(e.rows));
    if (lb > 0 || le < L) {
      if (p.carry.empty()) {
        StatusOr<Buffer> carry = backend_->Alloc(DType::kF32, p.n, c.d_model);
        if (!carry.ok()) {
          o->status = carry.status().WithPrefix("chunked prefill");
          partial_.erase(it.seq);
          (void)kv_->Free(it.seq);
          return std::nullopt;
        }
        p.carry = std::move(*carry);
      }
      e.fs.layer_begin = lb;
      e.fs.layer_end = le;
      e.fs.carry = p.carry.view().Rows(p.done, e.rows);
    }
  }
  *budget -= std::min(e.work, *budget);
  return e;
}

void Engine::AfterPass(const PassEntry& e, const StepItem& it, const Status& pass, StepOutput* o) {
  const int L = config().n_layers;
  if (!pass.ok()) {
    o->status = pass;
    if (it.kind == StepItem::Kind::kPrefill) {
      partial_.erase(it.seq);
      (void)kv_->Free(it.seq);
    }
    return;
  }
  if (it.kind == StepItem::Kind::kDecode) {
    ++seq_len_[it.seq];
    if (e.fs.select != nullptr) e.fs.select->EndStep();
    o->done = true;
    return;
  }
  Partial& p = *partial_.at(it.seq);
  p.done += e.rows;
  // In tokens, rounded so that the steps' figures add up to PrefillWork.
  o->work = (p.work_done + e.work + L - 1) / L - (p.work_done + L - 1) / L;
  p.work_done += e.work;
  if (e.completes) {
    FinishPrefill(it, p, o);
  } else if (p.done == static_cast<int64_t>(p.pos.size()) && e.fs.layer_end > 0 && e.fs.layer_end < L) {
    o->status = NextSegment(p);
    if (!o->status.ok()) {
      partial_.erase(it.seq);
      (void)kv_->Free(it.seq);
    }
  }
}

Status Engine::NextSegment(Partial& p) {
  // The segment is complete: the stage at its end keeps rows of it, as an unchunked pass would.
  const int64_t alive = static_cast<int64_t>(p.pos.size());
  const ResolvedStage& stage = p.rs.stages[static_cast<size_t>(p.segment)];
  SLIM_ASSIGN_OR_RETURN(std::vector<int32_t> kept, model_->KeptRowsAt(p.rs, stage, p.carry.view().Rows(0, alive), p.pos));
  const int64_t k = static_cast<int64_t>(kept.size());
  backend_->GatherRows(p.carry.view().Rows(0, alive), kept, p.carry.view().Rows(0, k));  // rows move to the front
  std::vector<int32_t> pos;
  pos.reserve(kept.size());
  for (int32_t r : kept) pos.push_back(p.pos[static_cast<size_t>(r)]);
  p.pos = std::move(pos);
  p.summary.stages.push_back({stage.layer, k});
  ++p.segment;
  p.done = 0;
  return OkStatus();
}

void Engine::FinishPrefill(const StepItem& item, Partial& p, StepOutput* out) {
  const ModelConfig& c = config();
  seq_len_[item.seq] = static_cast<int32_t>(p.n);
  out->done = true;
  PrefillResult& r = out->prefill;
  r.prompt_tokens = static_cast<int32_t>(p.n);
  r.kv_bytes = SequenceKvBytes(item.seq);
  r.pruning = std::move(p.summary);
  r.pruning.applied = !p.rs.empty();
  r.pruning.prompt_tokens = p.n;
  r.pruning.kv_bytes = r.kv_bytes;
  r.pruning.dense_kv_bytes = static_cast<size_t>(p.n) * static_cast<size_t>(c.n_layers) * kv_->layout().TokenBytes();
  r.prefill_ms = MsSince(p.t0);
  if (p.decode_kv_budget > 0) {
    if (Status s = StartSelection(item.seq, p.bounds, p.decode_kv_budget); !s.ok()) {
      out->status = s.WithPrefix("decode KV selection");
      out->done = false;
      seq_len_.erase(item.seq);
      partial_.erase(item.seq);
      (void)kv_->Free(item.seq);
      return;
    }
  }
  partial_.erase(item.seq);  // p is gone
}

Status Engine::RunPass(const std::function<Status(std::vector<float>*)>& pass, std::span<PassRow> rows) {
  const size_t vocab = static_cast<size_t>(config().vocab_size);
  sample_requests_.assign(rows.size(), SummaryRequest{});
  bool any_sampler = false, any_logits = false, summarized = false;
  for (size_t i = 0; i < rows.size(); ++i) {
    any_logits = any_logits || rows[i].want_logits;
    const SampleSpec& s = rows[i].sample;
    if (s.sampler == nullptr) continue;
    any_sampler = true;
    if (std::optional<SummaryRequest> req = s.sampler->SummaryRequestFor(s.history)) {
      sample_requests_[i] = std::move(*req);
      summarized = true;
    }
  }
  // When no row can be decided by a summary, one download of every row beats a summary pass.
  if (!summarized) {
    SLIM_RETURN_IF_ERROR(pass(any_sampler || any_logits ? &sample_rows_ : nullptr));
  } else {
    SLIM_RETURN_IF_ERROR(pass(nullptr));
    SLIM_RETURN_IF_ERROR(model_->SummarizeLast(sample_requests_, &summaries_));
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    PassRow& row = rows[i];
    if (row.sample.sampler == nullptr && !row.want_logits) continue;
    if (row.sample.sampler != nullptr && summarized && sample_requests_[i].k > 0) {
      if (std::optional<SampleResult> r = row.sample.sampler->SampleFromSummary(summaries_[i])) {
        row.out->sampled = std::move(*r);
        ++sampling_counters_.from_summary;
        continue;
      }
    }
    std::span<const float> logits;
    if (summarized) {
      SLIM_RETURN_IF_ERROR(model_->DownloadLogits(static_cast<int64_t>(i), &sample_rows_));
      logits = sample_rows_;
    } else {
      logits = std::span<const float>(sample_rows_).subspan(i * vocab, vocab);
    }
    if (row.sample.sampler == nullptr) {
      row.out->logits.assign(logits.begin(), logits.end());
      continue;
    }
    row.out->sampled = row.sample.sampler->Sample(logits, row.sample.history);
    ++sampling_counters_.from_full_row;
  }
  return OkStatus();
}

Status Engine::Release(kv::SeqId seq) {
  if (partial_.erase(seq) > 0) return kv_->Free(seq);
  auto it = seq_len_.find(seq);
  if (it == seq_len_.end()) return NotFoundError("no live sequence " + std::to_string(seq));
  seq_len_.erase(it);
  selections_.erase(seq);
  return kv_->Free(seq);
}

Status Engine::SwapOut(kv::SeqId seq) {
  if (!seq_len_.count(seq)) return NotFoundError("no live sequence " + std::to_string(seq));
  return kv_->Offload(seq, /*release_gpu=*/true).status();
}

KvCapacity Engine::kv_capacity() const {
  const kv::KvLayout& L = kv_->layout();
  KvCapacity c;
  c.gpu_blocks = kv_->TotalBlocks();
  c.host_blocks = kv_->HostCapacityBlocks();
  c.gpu_bytes = static_cast<size_t>(c.gpu_blocks) * L.BlockBytes();
  c.host_bytes = static_cast<size_t>(c.host_blocks) * L.BlockBytes();
  c.gpu_tokens = c.gpu_blocks * L.block_tokens / L.n_layers;
  c.host_tokens = c.host_blocks * L.block_tokens / L.n_layers;
  return c;
}

Status Engine::WarmUp(int64_t max_prompt_tokens) {
  StopParams stop;
  stop.max_tokens = 2;
  stop.ignore_eos = true;
  const int32_t vocab = config().vocab_size;
  auto ids = [vocab](int64_t n) {  // any tokens do: only the sizes matter
    std::vector<int32_t> v(static_cast<size_t>(n));
    uint64_t x = 7;
    for (int32_t& t : v) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      t = static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(vocab));
    }
    return v;
  };
  SLIM_RETURN_IF_ERROR(Generate(ids(std::min<int64_t>(3, context_length_ - 2)), SamplingParams{}, stop).status());
  const int64_t min_rows = backend_->TunedMinRows();
  const int64_t limit = std::min(max_prompt_tokens, context_length_ - 1);
  if (min_rows <= 0 || limit < min_rows) return OkStatus();
  stop.max_tokens = 1;
  for (int64_t n = min_rows;; n = std::min(2 * n, limit)) {
    SLIM_ASSIGN_OR_RETURN(const int64_t blocks, PrefillBlocks(n));
    if (blocks > kv_->FreeBlocks()) break;  // the KV store's capacity ends the warm-up
    const std::vector<int32_t> prompt = ids(n);
    for (const PruningMode mode : {PruningMode::kOff, PruningMode::kDefault}) {
      if (mode == PruningMode::kDefault && default_pruning_.stages.empty()) continue;
      SLIM_RETURN_IF_ERROR(Generate(prompt, SamplingParams{}, stop, nullptr, -1, PruningRequest{.mode = mode}).status());
    }
    if (n == limit) break;
  }
  return OkStatus();
}

StatusOr<GenerateResult> Engine::Generate(std::span<const int32_t> prompt, const SamplingParams& sampling,
                                          const StopParams& stop,
                                          const std::function<void(const std::string&)>& on_text,
                                          kv::SeqId seq, const PruningRequest& pruning) {
  const ModelConfig& c = config();
  SLIM_RETURN_IF_ERROR(sampling.Validate(c.vocab_size));
  SLIM_RETURN_IF_ERROR(stop.Validate(c.vocab_size, static_cast<int32_t>(context_length_)));
  if (static_cast<int64_t>(prompt.size()) + stop.max_tokens > context_length_) {
    return InvalidArgumentError("prompt (" + std::to_string(prompt.size()) + " tokens) plus max_tokens (" +
                                std::to_string(stop.max_tokens) + ") exceeds the context length " +
                                std::to_string(context_length_));
  }
  if (seq < 0) seq = seq_len_.empty() ? 0 : seq_len_.rbegin()->first + 1;
  GenerateResult res;
  res.prompt_ids.assign(prompt.begin(), prompt.end());
  const auto t0 = std::chrono::steady_clock::now();
  Sampler sampler(sampling, c.vocab_size);
  SLIM_ASSIGN_OR_RETURN(PrefillResult pre, PrefillAndSample(seq, prompt, SampleSpec{&sampler, prompt}, pruning));
  res.pruning = pre.pruning;
  SequenceOutput output(tokenizer_.get(), stop);
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  std::vector<SampleResult> next(1, std::move(pre.sampled));
  std::chrono::steady_clock::time_point t_first;
  Status status;
  for (;;) {
    const SampleResult sr = std::move(next[0]);
    if (res.token_ids.empty()) {
      t_first = std::chrono::steady_clock::now();
      res.ttft_ms = MsSince(t0);
    }
    res.token_ids.push_back(sr.token);
    history.push_back(sr.token);
    SequenceOutput::Token t = output.Push(sr.token);
    t.text += t.rest;
    if (!t.text.empty()) {
      res.text += t.text;
      if (on_text) on_text(t.text);
    }
    if (t.finish != FinishReason::kNone) {
      res.finish = t.finish;
      break;
    }
    DecodeItem item{seq, sr.token};
    const SampleSpec spec{&sampler, history};
    status = DecodeAndSample(std::span<const DecodeItem>(&item, 1), std::span<const SampleSpec>(&spec, 1), &next);
    if (!status.ok()) break;
  }
  if (res.token_ids.size() > 1) {
    res.decode_ms_per_token = MsSince(t_first) / static_cast<double>(res.token_ids.size() - 1);
  }
  res.kv_bytes = SequenceKvBytes(seq);
  (void)Release(seq);
  if (!status.ok()) return status;
  return res;
}

}  // namespace slim
