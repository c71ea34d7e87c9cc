// The scheduler's view of the engine: sequence lifecycle, KV capacity and the tokenizer, behind
// an interface so scheduler policy is testable with a fake model. EngineRunner adapts
// slim::Engine. Thread-safety: like Engine, one thread drives Prefill/Decode/Release; the
// capacity getters (TotalBlocks, FreeBlocks) may be called from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/engine.h"

namespace slim::server {

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual int32_t vocab_size() const = 0;
  virtual int n_layers() const = 0;
  virtual int block_tokens() const = 0;
  virtual int64_t TotalBlocks() const = 0;
  virtual int64_t FreeBlocks() const = 0;
  // Null for a model without one (synthetic weights): no text, no end-of-generation tokens.
  virtual const Tokenizer* tokenizer() const = 0;
  virtual StatusOr<int64_t> PrefillBlocks(int64_t prompt_tokens, const PruningRequest& pruning) const = 0;
  virtual StatusOr<PrefillResult> Prefill(kv::SeqId seq, std::span<const int32_t> prompt,
                                          const PruningRequest& pruning) = 0;
  // logits: [items.size() * vocab]
  virtual Status Decode(std::span<const DecodeItem> items, std::vector<float>* logits) = 0;
  virtual Status Release(kv::SeqId seq) = 0;
  // Swapping through the KV store's host tier (Engine::SwapOut / SwapIn). A runner without a
  // host tier reports no free host blocks and is never asked to swap.
  virtual int64_t HostFreeBlocks() const { return 0; }
  virtual int64_t HostBlocksToSwapOut(kv::SeqId seq) const { return 0; }
  virtual Status SwapOut(kv::SeqId seq) { return UnimplementedError("this runner cannot swap"); }
  virtual Status SwapIn(kv::SeqId seq) { return UnimplementedError("this runner cannot swap"); }

  // Prefill / Decode that also sample (Engine::PrefillAndSample / DecodeAndSample: the result
  // is sampler->Sample on the full logits). These defaults sample the rows Prefill / Decode
  // return; EngineRunner lets the engine sample from the backend's logits summary.
  virtual StatusOr<PrefillResult> PrefillAndSample(kv::SeqId seq, std::span<const int32_t> prompt,
                                                   const PruningRequest& pruning, const SampleSpec& sample) {
    SLIM_ASSIGN_OR_RETURN(PrefillResult r, Prefill(seq, prompt, pruning));
    r.sampled = sample.sampler->Sample(r.logits, sample.history);
    r.logits.clear();
    return r;
  }
  virtual Status DecodeAndSample(std::span<const DecodeItem> items, std::span<const SampleSpec> samples,
                                 std::vector<SampleResult>* sampled) {
    if (samples.size() != items.size()) return InvalidArgumentError("decode: one sampler per item");
    std::vector<float> logits;
    SLIM_RETURN_IF_ERROR(Decode(items, &logits));
    const size_t vocab = static_cast<size_t>(vocab_size());
    sampled->resize(samples.size());
    for (size_t i = 0; i < samples.size(); ++i) {
      const std::span<const float> row(logits.data() + i * vocab, vocab);
      (*sampled)[i] = samples[i].sampler->Sample(row, samples[i].history);
    }
    return OkStatus();
  }
};

class EngineRunner final : public ModelRunner {
 public:
  explicit EngineRunner(Engine* engine) : e_(engine) {}
  int32_t vocab_size() const override { return e_->config().vocab_size; }
  int n_layers() const override { return e_->config().n_layers; }
  int block_tokens() const override { return e_->kv().layout().block_tokens; }
  int64_t TotalBlocks() const override { return e_->kv().TotalBlocks(); }
  int64_t FreeBlocks() const override { return e_->kv().FreeBlocks(); }
  const Tokenizer* tokenizer() const override { return e_->tokenizer(); }
  StatusOr<int64_t> PrefillBlocks(int64_t prompt_tokens, const PruningRequest& pruning) const override {
    return e_->PrefillBlocks(prompt_tokens, pruning);
  }
  StatusOr<PrefillResult> Prefill(kv::SeqId seq, std::span<const int32_t> prompt,
                                  const PruningRequest& pruning) override {
    return e_->Prefill(seq, prompt, pruning);
  }
  Status Decode(std::span<const DecodeItem> items, std::vector<float>* logits) override {
    return e_->Decode(items, logits);
  }
  Status Release(kv::SeqId seq) override { return e_->Release(seq); }
  int64_t HostFreeBlocks() const override { return e_->kv().HostFreeBlocks(); }
  int64_t HostBlocksToSwapOut(kv::SeqId seq) const override { return e_->kv().HostBlocksToOffload(seq); }
  Status SwapOut(kv::SeqId seq) override { return e_->SwapOut(seq); }
  Status SwapIn(kv::SeqId seq) override { return e_->SwapIn(seq); }
  StatusOr<PrefillResult> PrefillAndSample(kv::SeqId seq, std::span<const int32_t> prompt,
                                           const PruningRequest& pruning, const SampleSpec& sample) override {
    return e_->PrefillAndSample(seq, prompt, sample, pruning);
  }
  Status DecodeAndSample(std::span<const DecodeItem> items, std::span<const SampleSpec> samples,
                         std::vector<SampleResult>* sampled) override {
    return e_->DecodeAndSample(items, samples, sampled);
  }

 private:
  Engine* e_;
};

}  // namespace slim::server
