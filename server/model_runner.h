// The scheduler's view of the engine: sequence lifecycle, KV capacity and the tokenizer, behind
// an interface so scheduler policy is testable with a fake model. EngineRunner adapts
// slim::Engine. Thread-safety: like Engine, one thread drives Step/Release/Swap*; the
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
  // One forward step over decodes and prefills (Engine::Step: prefills in the given order while
  // `prefill_budget` lasts, 0 = no limit; each completed item sampled with its SampleSpec).
  virtual Status Step(std::span<const StepItem> items, int64_t prefill_budget, std::vector<StepOutput>* out) = 0;
  virtual Status Release(kv::SeqId seq) = 0;
  // Swapping through the KV store's host tier (Engine::SwapOut / SwapIn). A runner without a
  // host tier reports no free host blocks and is never asked to swap.
  virtual int64_t HostFreeBlocks() const { return 0; }
  virtual int64_t HostBlocksToSwapOut(kv::SeqId seq) const { return 0; }
  virtual Status SwapOut(kv::SeqId seq) { return UnimplementedError("this runner cannot swap"); }
  virtual Status SwapIn(kv::SeqId seq) { return UnimplementedError("this runner cannot swap"); }
  // Bytes of the sequence's KV on the gpu tier now (Engine::GpuKvBytes); 0 when unknown.
  virtual size_t GpuKvBytes(kv::SeqId seq) const { return 0; }
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
  Status Step(std::span<const StepItem> items, int64_t prefill_budget, std::vector<StepOutput>* out) override {
    return e_->Step(items, prefill_budget, out);
  }
  Status Release(kv::SeqId seq) override { return e_->Release(seq); }
  int64_t HostFreeBlocks() const override { return e_->kv().HostFreeBlocks(); }
  int64_t HostBlocksToSwapOut(kv::SeqId seq) const override { return e_->kv().HostBlocksToOffload(seq); }
  Status SwapOut(kv::SeqId seq) override { return e_->SwapOut(seq); }
  Status SwapIn(kv::SeqId seq) override { return e_->SwapIn(seq); }
  size_t GpuKvBytes(kv::SeqId seq) const override { return e_->GpuKvBytes(seq); }

 private:
  Engine* e_;
};

}  // namespace slim::server
