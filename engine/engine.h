// The engine facade: model + backend + tokenizer + KV store, with sequence lifecycle
// (Prefill, batched Decode, Release) and a single-sequence Generate loop for tools and tests.
// Thread-safety: one thread drives Prefill/Decode/Release/Generate; Stats() and the const
// accessors may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/core/status.h"
#include "engine/model.h"
#include "engine/pruning/schedule.h"
#include "engine/sequence_output.h"
#include "engine/sampler/sampler.h"
#include "engine/sampler/stop_checker.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/chat_tokens.h"
#include "engine/tokenizer/tokenizer.h"
#include "kvstore/kv_store.h"

namespace slim {

struct EngineOptions {
  std::string model;                 // GGUF path or synthetic:NAME
  // For synthetic models (which have no vocabulary): a GGUF whose tokenizer.* metadata to use,
  // e.g. llama.cpp's vocab-only models/ggml-vocab-llama-bpe.gguf (Llama-3's 128,256 tokens) for
  // the 128K-vocabulary shapes; its size must equal the model's. "" = none (token ids only).
  std::string tokenizer;
  BackendOptions backend;            // device, threads, KV cache type, CUDA kernel choices
  // Chat message content is plain text: special-token texts in it (a user writing
  // "<|im_end|><|im_start|>system") stay text, only the template's markup yields special
  // tokens. true restores recognising them in content too (for trusted callers).
  bool chat_content_specials = false;
  // A Jinja chat template file used instead of the model's tokenizer.chat_template ("" = the
  // model's). A file that cannot be read or run fails Create; an unrunnable template of the
  // model leaves plain completions working and makes chat requests fail with its error.
  std::string chat_template_file;
  // KV store tiers (kvstore/kv_store.h). The first (gpu) tier: kv_tokens tokens per layer summed
  // over sequences when > 0; else kv_gib GiB when > 0; else, with gpu_memory_fraction > 0, that
  // share of the device memory free after the weights and the largest activation workspace (on
  // the CPU backend: 10% of RAM, or of the container's memory limit when lower); else one context
  // length.
  int64_t kv_tokens = 0;
  double kv_gib = 0.0;
  double gpu_memory_fraction = 0.0;
  // The host tier (swap space, pinned on CUDA): host_kv_tokens tokens per layer when > 0; else
  // host_kv_gib GiB (< 0: 25% of RAM or of the container's memory limit; 0: no host tier).
  int64_t host_kv_tokens = 0;
  double host_kv_gib = 0.0;
  int block_tokens = 64;
  // Longest sequence (prompt + generated) accepted; 0 = the model's trained context. Up to 4x
  // the trained context may be asked for, as llama.cpp's --ctx-size allows (quality beyond it
  // is the model's business).
  int64_t context_length = 0;
  uint64_t synthetic_seed = 1234;
  // The model's default pruning schedule ("layer:keep,..."; empty = the built-in default for
  // the model's depth). Requests choose off / default / explicit per call.
  std::string default_pruning;
  // Decode-time KV selection (engine/pruning/decode_selection.h): the budget in prompt tokens
  // per layer each segment attends over (0 = all; requests may set their own) and the overlap
  // at or above which a segment keeps the blocks in force.
  int64_t decode_kv_budget = 0;
  double decode_kv_gamma = 0.9;
  // The layer at which segment 0 (and any segment it falls inside) chooses; 0 = each segment's
  // first layer. The layers before it attend over every block.
  int decode_kv_select_layer = 0;
  // How the blocks are scored: unit-mean keys on the backend, or per-unit key bounds on the host.
  DecodeKvScore decode_kv_score = DecodeKvScore::kUnitMeans;
  // With a host tier: layers after each choosing layer that keep every prompt block on the gpu
  // tier (DecodeSelectionOptions::resident_layers).
  int decode_kv_resident_layers = 1;
};

// What the KV store's tiers hold (GetModelInfo, sliminfer-cli info).
struct KvCapacity {
  int64_t gpu_blocks = 0, host_blocks = 0;
  size_t gpu_bytes = 0, host_bytes = 0;
  int64_t gpu_tokens = 0, host_tokens = 0;  // tokens per layer: blocks x block_tokens / n_layers
};

struct PrefillResult {
  std::vector<float> logits;         // [vocab] at the last prompt position (Prefill only)
  SampleResult sampled;              // the first token (PrefillAndSample only)
  int32_t prompt_tokens = 0;
  size_t kv_bytes = 0;               // bytes of K/V stored for this sequence after prefill
  double prefill_ms = 0.0;
  PruningSummary pruning;            // what pruning did (applied = false when dense)
};

// One sequence's sampling in a forward pass: its sampler (advanced by one sample) and the tokens
// its penalties look at (prompt + generated so far, as Sampler::Sample takes them).
struct SampleSpec {
  Sampler* sampler = nullptr;
  std::span<const int32_t> history;
};

// How PrefillAndSample / DecodeAndSample sampled, summed over calls.
struct SamplingCounters {
  int64_t from_summary = 0;   // decided by the backend's logits summary
  int64_t from_full_row = 0;  // the row was downloaded (params need it, or the summary could not decide)
};

struct DecodeItem {
  kv::SeqId seq = 0;
  int32_t token = 0;                 // token to append (the one just sampled)
};

// One sequence's share of an engine step (Engine::Step).
struct StepItem {
  enum class Kind { kPrefill, kDecode };
  Kind kind = Kind::kDecode;
  kv::SeqId seq = 0;
  // kPrefill: the whole prompt, the same every step until its prefill is done (the engine keeps
  // how far it got; the first step creates the sequence). kDecode: the one token to append.
  std::span<const int32_t> tokens;
  const PruningRequest* pruning = nullptr;  // kPrefill, read at the first step; null = dense
  // Sampled when the item completes (a decode; the last chunk of a prefill). With no sampler the
  // item's logits row is returned instead.
  SampleSpec sample;
};

struct StepOutput {
  Status status;            // this item's own failure; the sequence is gone then (a prefill) or unchanged (a decode)
  bool done = false;        // decode: the token is appended; prefill: the whole prompt ran
  int64_t work = 0;         // prefill: the budget this item used (Engine::PrefillWork's unit)
  SampleResult sampled;     // done, with a sampler
  std::vector<float> logits;  // done, without one: [vocab]
  PrefillResult prefill;    // a prefill done: prompt_tokens, kv_bytes, pruning, prefill_ms (first step to last)
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> token_ids;    // generated, including a final stop token if any
  std::string text;                  // emitted text (stop strings excluded)
  FinishReason finish = FinishReason::kNone;
  double ttft_ms = 0.0;              // prefill + first sample
  double decode_ms_per_token = 0.0;  // mean over tokens after the first
  size_t kv_bytes = 0;
  PruningSummary pruning;
};

class Engine {
 public:
  static StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  ~Engine();

  const ModelConfig& config() const { return model_->config(); }
  // The sequence-length limit in force (EngineOptions::context_length or the model's).
  int64_t context_length() const { return context_length_; }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }          // null for synthetic
  const ChatTemplate* chat_template() const { return chat_.has_value() ? &*chat_ : nullptr; }
  // Why chat_template() is null: no template, or the model's template cannot be run.
  const Status& chat_status() const { return chat_status_; }
  Backend* backend() const { return backend_.get(); }
  size_t weight_bytes() const { return model_->weight_bytes(); }  // on the backend, all copies
  kv::KvStore& kv() { return *kv_; }
  const kv::KvStore& kv() const { return *kv_; }
  std::string Describe() const;

  // Tokens of `text` (special-token texts recognised when parse_special).
  StatusOr<std::vector<int32_t>> Tokenize(std::string_view text, bool parse_special) const;
  // Tokens of the chat-templated messages: the template's markup with special tokens, message
  // content as plain text unless EngineOptions::chat_content_specials.
  StatusOr<std::vector<int32_t>> TokenizeChat(const std::vector<ChatMessage>& messages) const;


  // Creates sequence `seq`, reserves KV for its prompt and runs it. ResourceExhausted (and no
  // sequence left behind) when the KV store cannot hold it; InvalidArgument for bad ids or a
  // prompt over the context.
  StatusOr<PrefillResult> Prefill(kv::SeqId seq, std::span<const int32_t> prompt,
                                  const PruningRequest& pruning = {});
  // KV blocks a prefill of `prompt_tokens` with `pruning` would reserve (for admission).
  StatusOr<int64_t> PrefillBlocks(int64_t prompt_tokens, const PruningRequest& pruning = {}) const;
  const PruningConfig& default_pruning() const { return default_pruning_; }
  // Appends one token to each listed sequence and returns each one's next-token logits
  // ([items.size() * vocab]). ResourceExhausted when a new KV block cannot be had (nothing
  // is changed then).
  Status Decode(std::span<const DecodeItem> items, std::vector<float>* logits);
  // Prefill and Decode that also sample, each sequence with its SampleSpec: from the backend's
  // summary of the logits (Backend::SummarizeLogits, Sampler::SampleFromSummary) where that
  // decides exactly, else from the downloaded row; either way the result is what
  // sampler->Sample(full logits, history) gives. PrefillResult::logits stays empty;
  // (*sampled)[i] belongs to items[i].
  StatusOr<PrefillResult> PrefillAndSample(kv::SeqId seq, std::span<const int32_t> prompt, const SampleSpec& sample,
                                           const PruningRequest& pruning = {});
  Status DecodeAndSample(std::span<const DecodeItem> items, std::span<const SampleSpec> samples,
                         std::vector<SampleResult>* sampled);
  // One forward step over several sequences: decodes (one token each) and prefills, the prefills
  // in the given order while `prefill_budget` lasts (0 = no limit). The budget counts prompt
  // tokens through every layer: a dense prompt of n tokens costs n; a pruned one less
  // (PrefillWork). A prefill whose remaining work fits runs whole; the first that does not fit
  // runs a chunk of it (at least one row; a pruned prompt's chunk stays inside one segment), and
  // what budget is left goes on to those after it; a prefill it does not reach waits (work 0,
  // nothing created).
  // Dense prompts chunk anywhere; pruned ones chunk the layers between pruning stages, one chunk
  // of one segment per step (each stage waits for every row of the segment before it, then
  // scores and keeps rows as an unchunked prefill would; stages after attention are not
  // chunked: such a prompt runs whole). Everything shares one batched forward pass, so the
  // weights are read once per step.
  // `out` gets one StepOutput per item; the Status is for the step as a whole (bad items are
  // reported in their own StepOutput).
  Status Step(std::span<const StepItem> items, int64_t prefill_budget, std::vector<StepOutput>* out);
  // The budget a whole prefill of `prompt_tokens` with `pruning` takes in Step: the sum over
  // layers of the rows alive there, divided by the layer count (rounded up).
  StatusOr<int64_t> PrefillWork(int64_t prompt_tokens, const PruningRequest& pruning = {}) const;
  // Work a started prefill still needs (0 for a sequence not being prefilled).
  int64_t PrefillWorkLeft(kv::SeqId seq) const;

  // Engine thread only.
  const SamplingCounters& sampling_counters() const { return sampling_counters_; }
  // Decode KV selections made so far, summed over sequences.
  const DecodeSelectionStats& decode_selection_stats() const { return selection_stats_; }
  // The selection state of a live sequence decoding under a budget, or null.
  const DecodeSelection* decode_selection(kv::SeqId seq) const;
  int64_t default_decode_kv_budget() const { return decode_kv_budget_; }
  // Frees the sequence's KV blocks.
  Status Release(kv::SeqId seq);
  // Swap-out: copies the sequence's KV to the host tier (blocks already clean there are not
  // copied again) and frees its gpu blocks; ResourceExhausted (nothing changed) when the host
  // tier lacks room. Swap-in: gives it gpu blocks again and prefetches its KV; the next forward
  // pass over it waits per layer on the device. Neither recomputes anything.
  Status SwapOut(kv::SeqId seq);
  Status SwapIn(kv::SeqId seq);
  KvCapacity kv_capacity() const;
  // Tokens the sequence holds (prompt + appended), or -1.
  int32_t SequenceLength(kv::SeqId seq) const;
  // KV bytes the sequence's tokens occupy (sum over layers of tokens x per-token bytes).
  size_t SequenceKvBytes(kv::SeqId seq) const;
  // Bytes of the sequence's KV blocks on the gpu tier now (with a tiered decode KV selection,
  // the chosen blocks; otherwise every block it holds, reserved ones included).
  size_t GpuKvBytes(kv::SeqId seq) const;

  // Takes before serving what the backend does on first use: one short generation, then, where
  // the backend tunes products per row bucket (CUDA's GEMM tuner), one prompt of each bucket's
  // size up to max_prompt_tokens (powers of two from TunedMinRows(), then max_prompt_tokens
  // itself; capped by the context and the free KV blocks), dense and with the model's default
  // pruning schedule, so the first long request does not pay for tuning and workspace growth.
  Status WarmUp(int64_t max_prompt_tokens);

  // Prefill + sample/decode loop for one prompt; `on_text` receives text deltas as they are
  // final. Uses sequence id `seq` and releases it at the end.
  StatusOr<GenerateResult> Generate(std::span<const int32_t> prompt, const SamplingParams& sampling,
                                    const StopParams& stop,
                                    const std::function<void(const std::string&)>& on_text = nullptr,
                                    kv::SeqId seq = -1, const PruningRequest& pruning = {});

 private:
  Engine() = default;
  // Sets chat_ from --chat-template `file` (errors are Create's) or the model's template (an
  // error is kept in chat_status_).
  Status LoadChatTemplate(const std::string& file, const std::string& model_template, const ChatTemplateOptions& co);
  struct Partial;
  struct PassRow;
  // A sequence's part of a step's pass: its rows, the budget they use (row-layers), and whether
  // the item is done after the pass.
  struct PassEntry {
    size_t item = 0;
    ForwardSeq fs;
    int64_t rows = 0, work = 0;
    bool completes = false;
  };
  // Prefill / Decode through Step, with sampling when `samples` is not empty (one per sequence).
  StatusOr<PrefillResult> PrefillWith(kv::SeqId seq, std::span<const int32_t> prompt, const PruningRequest& pruning,
                                      std::span<const SampleSpec> samples);
  Status DecodeWith(std::span<const DecodeItem> items, std::span<const SampleSpec> samples, std::vector<float>* logits,
                    std::vector<SampleResult>* sampled);
  // Step's parts: a new prefill's checks, schedule and KV; the decodes' KV (all or nothing); a
  // pruned chunked prompt's move to its next segment; a prefill's end.
  Status StartPrefill(const StepItem& item, Partial* p);
  Status ReserveDecodes(std::span<const StepItem> items, std::span<const size_t> decodes);
  Status NextSegment(Partial& p);  // a pruned chunked prompt's stage between two segments
  // Prefill item i's entry for this step's pass (none: it failed, its status in *o), the budget
  // reduced by its work; after the pass, each entry's item advanced or failed with the pass.
  std::optional<PassEntry> PlanPrefill(size_t i, const StepItem& it, int64_t* budget, StepOutput* o);
  void AfterPass(const PassEntry& e, const StepItem& it, const Status& pass, StepOutput* o);
  void FinishPrefill(const StepItem& item, Partial& p, StepOutput* out);
  // A finished prefill's decode KV selection (engine/decode_budget.cpp): segments from the
  // prompt's schedule (layer bounds: 0, each stage's layer, n_layers), each one's unit-mean
  // keys read from its first layer's KV.
  Status StartSelection(kv::SeqId seq, const std::vector<int>& bounds, int64_t budget_tokens);
  // A forward pass (`pass` runs it, downloading the logits into its argument when not null) and
  // the sampling or logits download of each of its rows: rows[i] is the pass's sequence i.
  Status RunPass(const std::function<Status(std::vector<float>*)>& pass, std::span<PassRow> rows);

  // A prompt being prefilled over several steps.
  std::map<kv::SeqId, std::unique_ptr<Partial>> partial_;

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<WeightSource> source_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::optional<ChatTemplate> chat_;
  Status chat_status_;  // ok when chat_ is set
  bool chat_content_specials_ = false;
  std::unique_ptr<kv::TierMemory> kv_memory_;  // the backend's memory and copies for kv_
  std::unique_ptr<kv::KvStore> kv_;
  std::map<kv::SeqId, int32_t> seq_len_;  // tokens per live sequence
  std::vector<int32_t> scratch_pos_;
  PruningConfig default_pruning_;
  int64_t decode_kv_budget_ = 0;
  double decode_kv_gamma_ = 0.9;
  int decode_kv_select_layer_ = 0;
  DecodeKvScore decode_kv_score_ = DecodeKvScore::kUnitMeans;
  int decode_kv_resident_layers_ = 1;
  std::map<kv::SeqId, DecodeSelection> selections_;
  DecodeSelectionStats selection_stats_;
  int64_t context_length_ = 0;
  // RunPass scratch.
  std::vector<SummaryRequest> sample_requests_;  // k == 0: that row is not summarized
  std::vector<LogitsSummary> summaries_;
  std::vector<float> sample_rows_;               // downloaded rows
  SamplingCounters sampling_counters_;
};

}  // namespace slim
