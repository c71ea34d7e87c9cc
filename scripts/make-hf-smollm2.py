#!/usr/bin/env python3
"""Rebuilds the default model as a Hugging Face checkpoint, from the GGUF alone (no torch).

models/SmolLM2-135M-Instruct.Q4_1.gguf  ->  models/hf/SmolLM2-135M-Instruct/
    config.json             LlamaForCausalLM hyperparameters from the GGUF metadata
    model.safetensors       every tensor dequantized by the `gguf` package (numpy), Q and K
                            rows un-permuted back to the rotate-half layout HF checkpoints use
                            (llama.cpp's converter permutes them for GGUF), rounded to bf16
                            (round to nearest even), written by safetensors' serializer
    tokenizer.json, tokenizer_config.json, chat_template.jinja
                            transformers' GGUF tokenizer conversion (the converter
                            AutoTokenizer.from_pretrained(models, gguf_file=...) runs, fed by the
                            `gguf` package, since transformers' own GGUF reader imports torch)
    source.json             what it was built from; a rerun with the same GGUF and script is a no-op

Needs numpy, gguf, safetensors, transformers >= 5 (scripts/setup.sh installs them); not torch.
Usage: scripts/make-hf-smollm2.py [--models models] [--force]
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors import TensorSpec, serialize_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_gguf_tokenizer import metadata_value, write_hf_tokenizer  # noqa: E402

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT_NAME = os.path.join("hf", "SmolLM2-135M-Instruct")


def field(reader, key):
    f = reader.fields[key]
    v = f.parts[f.data[0]]
    return bytes(v).decode() if f.types[0].name == "STRING" else v.tolist()[0]


def unpermute(w, n_head):
    """Inverse of llama.cpp's convert_hf_to_gguf permute: adjacent (2i, 2i + 1) RoPE pairs back to
    the rotate-half (i, i + d/2) row order within each head."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def to_bf16_bits(x):
    """float32 -> bf16 bit patterns (uint16), round to nearest even; the values are finite."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def hf_name(name):
    """GGUF tensor name -> HF LlamaForCausalLM name."""
    fixed = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    if name in fixed:
        return fixed[name]
    blk, layer, rest = name.split(".", 2)
    assert blk == "blk", name
    per_layer = {"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
                 "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
                 "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
                 "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
                 "ffn_down.weight": "mlp.down_proj.weight"}
    return "model.layers.%s.%s" % (layer, per_layer[rest])


def write_weights(reader, out, n_head, n_head_kv):
    specs, keep = {}, []
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))  # ggml lists the contiguous dim first
        w = w.reshape(shape)
        if t.name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute(w, n_head_kv)
        bits = to_bf16_bits(w)
        keep.append(bits)
        specs[hf_name(t.name)] = TensorSpec(dtype="bfloat16", shape=bits.shape, data_ptr=bits.ctypes.data,
                                            data_len=bits.nbytes)
    serialize_file(specs, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    return len(specs)


def short(x):
    """A float32 metadata value as its shortest decimal (1e-05, not 9.999999747378752e-06)."""
    return float("%.7g" % x)


def write_config(reader, out, n_tensors_has_output):
    a = "llama."
    n_head = field(reader, a + "attention.head_count")
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": field(reader, a + "embedding_length"),
        "intermediate_size": field(reader, a + "feed_forward_length"),
        "num_hidden_layers": field(reader, a + "block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": field(reader, a + "attention.head_count_kv"),
        "max_position_embeddings": field(reader, a + "context_length"),
        "rms_norm_eps": short(field(reader, a + "attention.layer_norm_rms_epsilon")),
        "rope_theta": short(field(reader, a + "rope.freq_base")),
        "rope_scaling": None,
        "vocab_size": len(reader.fields["tokenizer.ggml.tokens"].data),
        "tie_word_embeddings": not n_tensors_has_output,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": field(reader, "tokenizer.ggml.eos_token_id"),
        "torch_dtype": "bfloat16",
    }
    if "tokenizer.ggml.padding_token_id" in reader.fields:
        config["pad_token_id"] = field(reader, "tokenizer.ggml.padding_token_id")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    src = os.path.join(args.models, GGUF_NAME)
    out = os.path.join(args.models, OUT_NAME)
    if not os.path.exists(src):
        sys.exit("make-hf-smollm2: %s is missing (run scripts/fetch-model.sh)" % src)
    h = hashlib.sha256()
    with open(src, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    scripts = [__file__, os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_gguf_tokenizer.py")]
    digest = hashlib.sha256()
    for path in scripts:
        with open(path, "rb") as f:
            digest.update(f.read())
    stamp = {"gguf": GGUF_NAME, "gguf_sha256": h.hexdigest(), "scripts_sha256": digest.hexdigest()}
    stamp_path = os.path.join(out, "source.json")
    if not args.force and os.path.exists(stamp_path):
        with open(stamp_path) as f:
            if json.load(f) == stamp:
                print("make-hf-smollm2: %s is up to date" % out)
                return
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    reader = GGUFReader(src)
    has_output = any(t.name == "output.weight" for t in reader.tensors)
    config = write_config(reader, tmp, has_output)
    n = write_weights(reader, tmp, config["num_attention_heads"], config["num_key_value_heads"])
    write_hf_tokenizer(reader, tmp)
    with open(os.path.join(tmp, "source.json"), "w") as f:
        json.dump(stamp, f, indent=2)
        f.write("\n")
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print("make-hf-smollm2: wrote %s (%d tensors, bf16)" % (out, n))


if __name__ == "__main__":
    main()
