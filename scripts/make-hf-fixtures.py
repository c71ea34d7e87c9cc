#!/usr/bin/env python3
"""Writes tiny random-weight Hugging Face checkpoints and transformers' outputs on them.

tests/fixtures/hf/<name>/   config.json, the weights (save_pretrained: model.safetensors, or
                            shards + model.safetensors.index.json) and reference.json: for
                            fixed token-id prompts, transformers' last-position logits (fp32
                            compute on the saved weights), its greedy continuation and the
                            top-2 margin of each greedy step. Read by tests/engine/hf_model_test.cpp.

  llama3_tied      LLaMA-3 style: llama3 rope_scaling (original context 64, so prompts past
                   it exercise every band), tied embeddings, fp32
  llama2_untied    LLaMA-2 style: no scaling, untied LM head, bf16
  qwen2_tied       Qwen2: QKV biases, tied, use_sliding_window false, sharded (small shards)
  mistral_window   Mistral: sliding_window 4096 > max_position_embeddings 2048 (inactive),
                   head_dim 32 != hidden_size / heads, fp16

Weights are drawn with a fan-in scale (not transformers' 0.02 init) so logits spread over a few
units and greedy steps are decided by clear margins. Needs torch, transformers, safetensors
(not needed in CI: the outputs are committed). Deterministic for a given torch/transformers.
Usage: scripts/make-hf-fixtures.py [--out-dir tests/fixtures/hf]
"""
import argparse
import json
import math
import os
import shutil

import torch
import transformers
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM)

COMMON = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=2048, rms_norm_eps=1e-5, hidden_act="silu")
PROMPT_LENGTHS = [1, 6, 40, 150]
NEW_TOKENS = 12


def models():
    """name -> (config, model class, save dtype, save_pretrained kwargs)."""
    return {
        "llama3_tied": (LlamaConfig(**COMMON, num_hidden_layers=3, vocab_size=384, tie_word_embeddings=True,
                                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
                                    rope_theta=500000.0),
                        LlamaForCausalLM, torch.float32, {}),
        "llama2_untied": (LlamaConfig(**COMMON, num_hidden_layers=2, vocab_size=320, tie_word_embeddings=False,
                                      rope_theta=10000.0),
                          LlamaForCausalLM, torch.bfloat16, {}),
        "qwen2_tied": (Qwen2Config(**COMMON, num_hidden_layers=3, vocab_size=352, tie_word_embeddings=True,
                                   rope_theta=1000000.0, use_sliding_window=False, sliding_window=4096,
                                   max_window_layers=2),
                       Qwen2ForCausalLM, torch.float32, {"max_shard_size": "150KB"}),
        "mistral_window": (MistralConfig(**dict(COMMON, num_attention_heads=4, num_key_value_heads=1),
                                         head_dim=32, num_hidden_layers=2, vocab_size=300, tie_word_embeddings=False,
                                         sliding_window=4096, rope_theta=10000.0),
                           MistralForCausalLM, torch.float16, {}),
    }


def init_weights(model, gen):
    """Matrices ~ N(0, 1/fan_in), embeddings N(0, 1), biases N(0, 0.5^2), norms 1 + N(0, 0.1^2)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))


def reference(model, vocab, gen):
    cases = []
    for n in PROMPT_LENGTHS:
        ids = torch.randint(0, vocab, (1, n), generator=gen)
        # Greedy by hand (full forward per step): generate() would apply the generation
        # config's logits processors (min_new_tokens masks the EOS id, for one).
        with torch.no_grad():
            logits = model(ids).logits[0, -1].float()
            seq, cont, margins, step = ids, [], [], logits
            for _ in range(NEW_TOKENS):
                top = torch.topk(step, 2)
                cont.append(int(top.indices[0]))
                margins.append(float(top.values[0] - top.values[1]))
                seq = torch.cat([seq, top.indices[:1].view(1, 1)], dim=1)
                step = model(seq).logits[0, -1].float()
        cases.append({"prompt_ids": ids[0].tolist(), "logits": [float(x) for x in logits],
                      "greedy": cont, "greedy_margins": margins})
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "hf"))
    args = ap.parse_args()
    torch.manual_seed(0)
    for i, (name, (config, cls, dtype, save_kw)) in enumerate(sorted(models().items())):
        out = os.path.join(args.out_dir, name)
        shutil.rmtree(out, ignore_errors=True)
        gen = torch.Generator().manual_seed(1000 + i)
        model = cls(config).eval()
        init_weights(model, gen)
        model.to(dtype).save_pretrained(out, safe_serialization=True, **save_kw)
        # The oracle runs on exactly the saved weights, upcast to fp32 as the engine does.
        ref_model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
        cases = reference(ref_model, config.vocab_size, gen)
        with open(os.path.join(out, "reference.json"), "w") as f:
            json.dump({"model": name, "saved_dtype": str(dtype).replace("torch.", ""),
                       "transformers": transformers.__version__, "torch": torch.__version__,
                       "cases": cases}, f, indent=0)
            f.write("\n")
        size = sum(os.path.getsize(os.path.join(out, x)) for x in os.listdir(out))
        print("%-15s %s, %d files, %d bytes; min greedy margin %.3f" % (
            name, dtype, len(os.listdir(out)), size, min(min(c["greedy_margins"]) for c in cases)))


if __name__ == "__main__":
    main()
