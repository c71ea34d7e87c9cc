#!/usr/bin/env python3
"""An independent fp32 (float64 accumulate) LLaMA forward pass in numpy over the GGUF weights
dequantized by the `gguf` package. Used to tell our engine's arithmetic apart from llama.cpp's
quantized arithmetic: prints the last-position logits' distance to ours and to llama.cpp's.

usage: scripts/numpy-forward.py --case p16|all [--model M] [--fixtures tests/fixtures/llamacpp]
       [--write]            write numpy_<case>.f32 beside the llama.cpp logits (test fixtures)
       [--perturb rope-neox|rope-theta|norm-eps]  a deliberately wrong variant, to measure how
                            far such a bug moves the logits (what the test tolerances must catch)
"""
import argparse, json, os, sys
import numpy as np
import gguf


def tensor(r, name):
    for t in r.tensors:
        if t.name == name:
            a = gguf.quants.dequantize(t.data, t.tensor_type)
            return np.asarray(a, dtype=np.float64).reshape([int(x) for x in reversed(t.shape)])
    raise KeyError(name)


def field(r, key):
    return r.fields[key].contents()


def rmsnorm(x, w, eps):
    if PERTURB == "norm-eps":
        eps = 1e-2
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


PERTURB = None


def rope(x, pos, theta):  # x [n, heads, hd]; adjacent pairs (ggml normal mode)
    hd = x.shape[-1]
    if PERTURB == "rope-theta":
        theta = 10000.0
    if PERTURB == "rope-neox":  # rotate (i, i + hd/2) pairs instead
        inv = theta ** (-np.arange(0, hd, 2) / hd)
        ang = pos[:, None] * inv[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., : hd // 2], x[..., hd // 2:]
        return np.concatenate([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)
    inv = theta ** (-np.arange(0, hd, 2) / hd)
    ang = pos[:, None] * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def forward(r, ids):
    L = field(r, "llama.block_count"); H = field(r, "llama.attention.head_count")
    KVH = field(r, "llama.attention.head_count_kv"); eps = field(r, "llama.attention.layer_norm_rms_epsilon")
    theta = field(r, "llama.rope.freq_base")
    emb = tensor(r, "token_embd.weight")
    x = emb[ids]
    n, d = x.shape
    hd = d // H
    pos = np.arange(n, dtype=np.float64)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for l in range(L):
        p = f"blk.{l}."
        h = rmsnorm(x, tensor(r, p + "attn_norm.weight"), eps)
        q = rope((h @ tensor(r, p + "attn_q.weight").T).reshape(n, H, hd), pos, theta)
        k = rope((h @ tensor(r, p + "attn_k.weight").T).reshape(n, KVH, hd), pos, theta)
        v = (h @ tensor(r, p + "attn_v.weight").T).reshape(n, KVH, hd)
        g = H // KVH
        k = np.repeat(k, g, axis=1); v = np.repeat(v, g, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", s, v).reshape(n, d)
        x = x + o @ tensor(r, p + "attn_output.weight").T
        h = rmsnorm(x, tensor(r, p + "ffn_norm.weight"), eps)
        gt = h @ tensor(r, p + "ffn_gate.weight").T
        up = h @ tensor(r, p + "ffn_up.weight").T
        x = x + (gt / (1 + np.exp(-gt)) * up) @ tensor(r, p + "ffn_down.weight").T
    h = rmsnorm(x[-1], tensor(r, "output_norm.weight"), eps)
    return emb @ h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--fixtures", default="tests/fixtures/llamacpp")
    ap.add_argument("--case", default="p16")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--perturb", choices=["rope-neox", "rope-theta", "norm-eps"])
    a = ap.parse_args()
    global PERTURB
    PERTURB = a.perturb
    r = gguf.GGUFReader(a.model)
    cases = json.load(open(os.path.join(a.fixtures, "logits.json")))["cases"]
    for c in cases:
        if a.case != "all" and c["name"] != a.case:
            continue
        ref = forward(r, np.array(c["prompt_ids"]))
        lc = np.fromfile(os.path.join(a.fixtures, c["logits_file"]), dtype=np.float32)
        dd = np.abs(ref - lc)
        print(f"{c['name']}: {len(c['prompt_ids'])} tokens; numpy{' ' + a.perturb if a.perturb else ''} vs "
              f"llama.cpp: max |diff| {dd.max():.4f}, rms {np.sqrt((dd ** 2).mean()):.4f}; "
              f"argmax {ref.argmax()} vs {lc.argmax()}", flush=True)
        if a.write and not a.perturb:
            ref.astype(np.float32).tofile(os.path.join(a.fixtures, f"numpy_{c['name']}.f32"))


if __name__ == "__main__":
    sys.exit(main())
