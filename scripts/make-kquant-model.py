#!/usr/bin/env python3
"""Writes a real model file holding Q2_K, Q3_K, IQ4_XS and IQ4_NL tensors: the default model
(SmolLM2-135M-Instruct Q4_1) with blk.L.ffn_down.weight (rows of 1536 = 6 super-blocks)
re-quantized to Q2_K, Q3_K or IQ4_XS by L % 3 and blk.L.attn_output.weight (rows of 576, not a
multiple of 256: llama.cpp's IQ4_XS files use IQ4_NL there) to IQ4_NL; every other tensor and
all metadata are copied unchanged. Written with the `gguf` package's GGUFWriter.

The quantizers below are simple round-to-nearest ones of our own (the package has none for
these types, and the test needs valid blocks, not llama.cpp's best ones); they are deterministic,
so the tensors are identical on every machine: a sha256 over every tensor's name, type and
bytes (not the whole file, whose header layout is the writer's business) is checked against
tests/fixtures/kquant/reference.json. With --write-reference, also writes that fixture: the
last-position logits of the numpy float64 forward pass (scripts/numpy-forward.py) over the
file's weights as dequantized by gguf.quants.dequantize, for prompts of logits.json.

Needs: pip install gguf numpy; the default model (scripts/fetch-model.sh).
Usage: scripts/make-kquant-model.py [--model PATH] [--out PATH] [--write-reference]
"""
import argparse
import hashlib
import importlib.util
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "kquant")
CASES = ["p16", "p64"]  # prompts of tests/fixtures/llamacpp/logits.json
GRID = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32)


def f16(x):
    """fp32 values rounded to fp16 and back, as the blocks store and the readers use them."""
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def safe_div(a, b):
    return np.where(b != 0, a / np.where(b != 0, b, 1), 0).astype(np.float32)


def pack_2bit(q):
    """q [nb, 256] in 0..3 -> qs [nb, 64]: element 128h + 32s + l at bits 2s of qs[32h + l]."""
    q = q.reshape(-1, 2, 4, 32).astype(np.uint8)
    return sum(q[:, :, s, :] << np.uint8(2 * s) for s in range(4)).reshape(-1, 64).astype(np.uint8)


def amax_signed(x):
    """Per last axis: the value of largest magnitude, with its sign."""
    idx = np.abs(x).argmax(axis=-1)[..., None]
    return np.take_along_axis(x, idx, axis=-1)[..., 0]


def quant_q2_k(x):
    """x [nb, 256] -> block_q2_K bytes: scales[16] (scale | min << 4), qs[64], d, dmin."""
    x = x.reshape(-1, 16, 16)
    lo = np.minimum(x.min(-1), 0)
    sub_scale, sub_min = (x.max(-1) - lo) / 3, -lo
    d, dmin = f16(sub_scale.max(-1) / 15), f16(sub_min.max(-1) / 15)
    sc = np.clip(np.round(safe_div(sub_scale, d.astype(np.float32)[:, None])), 0, 15)
    m = np.clip(np.round(safe_div(sub_min, dmin.astype(np.float32)[:, None])), 0, 15)
    dl = (d.astype(np.float32)[:, None] * sc)[..., None]
    ml = (dmin.astype(np.float32)[:, None] * m)[..., None]
    q = np.clip(np.round(safe_div(x + ml, dl)), 0, 3).reshape(-1, 256)
    scales = (sc.astype(np.uint8) | (m.astype(np.uint8) << np.uint8(4)))
    return np.concatenate([scales, pack_2bit(q), d[:, None].view(np.uint8), dmin[:, None].view(np.uint8)], axis=1)


def quant_q3_k(x):
    """x [nb, 256] -> block_q3_K bytes: hmask[32], qs[64], scales[12], d."""
    x = x.reshape(-1, 16, 16)
    sub_scale = -amax_signed(x) / 4  # the largest magnitude maps to q = -4
    d = f16(np.abs(sub_scale).max(-1) / 32)
    sc = np.clip(np.round(safe_div(sub_scale, d.astype(np.float32)[:, None])), -32, 31)
    dl = (d.astype(np.float32)[:, None] * sc)[..., None]
    q = np.clip(np.round(safe_div(x, dl)), -4, 3).astype(np.int32).reshape(-1, 256)
    high = (q >= 0).astype(np.uint8)  # set: q = low; clear: q = low - 4
    low = np.where(q >= 0, q, q + 4)
    h = high.reshape(-1, 8, 32)
    hmask = sum(h[:, k, :] << np.uint8(k) for k in range(8)).astype(np.uint8)
    u = (sc + 32).astype(np.uint8)  # [nb, 16], 0..63
    s_lo = (u[:, :8] & 15) | ((u[:, 8:] & 15) << np.uint8(4))
    s_hi = sum(((u[:, 4 * k:4 * k + 4] >> np.uint8(4)) & 3) << np.uint8(2 * k) for k in range(4)).astype(np.uint8)
    return np.concatenate([hmask, pack_2bit(low), s_lo, s_hi, d[:, None].view(np.uint8)], axis=1)


def nearest_grid(x, dl):
    """Index of the grid value nearest x / dl (dl broadcast over x)."""
    return np.abs(dl[..., None] * GRID - x[..., None]).argmin(-1).astype(np.uint8)


def quant_iq4_xs(x):
    """x [nb, 256] -> block_iq4_xs bytes: d, scales_h (uint16), scales_l[4], qs[128]."""
    x = x.reshape(-1, 8, 32)
    sub_scale = amax_signed(x) / GRID[0]  # the largest magnitude maps to grid[0] = -127
    d = f16(np.abs(sub_scale).max(-1) / 32)
    ls = np.clip(np.round(safe_div(sub_scale, d.astype(np.float32)[:, None])), -32, 31)
    idx = nearest_grid(x, np.broadcast_to((d.astype(np.float32)[:, None] * ls)[..., None], x.shape))
    u = (ls + 32).astype(np.uint16)
    scales_h = sum(((u[:, ib] >> 4) & 3) << (2 * ib) for ib in range(8)).astype(np.uint16)
    scales_l = ((u[:, 0::2] & 15) | ((u[:, 1::2] & 15) << 4)).astype(np.uint8)
    qs = (idx[:, :, :16] | (idx[:, :, 16:] << np.uint8(4))).reshape(-1, 128)
    return np.concatenate([d[:, None].view(np.uint8), scales_h[:, None].view(np.uint8), scales_l, qs], axis=1)


def quant_iq4_nl(x):
    """x [nb, 32] -> block_iq4_nl bytes: d, qs[16]."""
    x = x.reshape(-1, 32)
    d = f16(amax_signed(x) / GRID[0])
    idx = nearest_grid(x, np.broadcast_to(d.astype(np.float32)[:, None], x.shape))
    qs = idx[:, :16] | (idx[:, 16:] << np.uint8(4))
    return np.concatenate([d[:, None].view(np.uint8), qs], axis=1)


QUANTIZERS = {Q.Q2_K: (256, quant_q2_k), Q.Q3_K: (256, quant_q3_k), Q.IQ4_XS: (256, quant_iq4_xs),
              Q.IQ4_NL: (32, quant_iq4_nl)}


def target_type(name):
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk":
        layer, what = int(parts[1]), parts[2]
        if what == "ffn_down":
            return (Q.Q2_K, Q.Q3_K, Q.IQ4_XS)[layer % 3]
        if what == "attn_output":
            return Q.IQ4_NL
    return None


def requantize(t, qtype):
    """Tensor `t` dequantized by the package and quantized to `qtype`: uint8 [rows, row bytes]."""
    block, fn = QUANTIZERS[qtype]
    rows = dequantize(t.data, t.tensor_type).astype(np.float32)  # [ne1, ne0]
    assert rows.shape[-1] % block == 0, f"{t.name}: rows of {rows.shape[-1]} do not fit {qtype.name}"
    blocks = fn(rows.reshape(-1, block))
    out = np.ascontiguousarray(blocks.reshape(rows.shape[0], -1))
    assert out.shape[1] == rows.shape[-1] // block * gguf.GGML_QUANT_SIZES[qtype][1], t.name
    return out


def write_model(src, dst):
    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), val_type, sub_type=sub_type)
    data, counts = [], {}
    for t in reader.tensors:
        qtype = target_type(t.name)
        arr, ttype = (requantize(t, qtype), qtype) if qtype is not None else (t.data, t.tensor_type)
        counts[ttype.name] = counts.get(ttype.name, 0) + 1
        writer.add_tensor_info(t.name, arr.shape, arr.dtype, arr.nbytes, ttype)
        data.append(arr)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for arr in data:
        writer.write_tensor_data(arr, tensor_endianess=reader.endianess)
    writer.close()
    return counts


def tensor_digest(path):
    """sha256 over the tensors of `path` as read back: name, type, shape and data bytes."""
    h = hashlib.sha256()
    for t in gguf.GGUFReader(path).tensors:
        h.update(f"{t.name}|{t.tensor_type.name}|{[int(x) for x in t.shape]}|".encode())
        h.update(np.ascontiguousarray(t.data).tobytes())
    return h.hexdigest()


def write_reference(path, digest, counts):
    spec = importlib.util.spec_from_file_location("numpy_forward", os.path.join(ROOT, "scripts", "numpy-forward.py"))
    nf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nf)
    reader = gguf.GGUFReader(path)
    cases = json.load(open(os.path.join(ROOT, "tests", "fixtures", "llamacpp", "logits.json")))["cases"]
    os.makedirs(FIXTURES, exist_ok=True)
    out = []
    for c in cases:
        if c["name"] not in CASES:
            continue
        logits = nf.forward(reader, np.array(c["prompt_ids"])).astype(np.float32)
        fname = f"numpy_{c['name']}.f32"
        logits.tofile(os.path.join(FIXTURES, fname))
        out.append({"name": c["name"], "prompt_ids": c["prompt_ids"], "argmax": int(logits.argmax()),
                    "logits_file": fname})
        print(f"{c['name']}: argmax {int(logits.argmax())}", flush=True)
    doc = {"generator": "scripts/make-kquant-model.py --write-reference (numpy float64 forward)",
           "model": os.path.basename(path), "tensors_sha256": digest, "tensor_types": counts,
           "n_vocab": int(len(logits)), "cases": out}
    with open(os.path.join(FIXTURES, "reference.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.kquant-mix.gguf"))
    ap.add_argument("--write-reference", action="store_true")
    args = ap.parse_args()
    ref_path = os.path.join(FIXTURES, "reference.json")
    want = None if args.write_reference else json.load(open(ref_path))["tensors_sha256"]
    if want is not None and os.path.exists(args.out) and tensor_digest(args.out) == want:
        print(f"make-kquant-model: {args.out} is up to date")
        return 0
    tmp = args.out + ".tmp"
    counts = write_model(args.model, tmp)
    digest = tensor_digest(tmp)
    if want is not None and digest != want:
        os.remove(tmp)
        print(f"make-kquant-model: wrote tensors with sha256 {digest}, but {ref_path} was made from {want}: "
              "the quantizers or the gguf package changed; rerun with --write-reference", file=sys.stderr)
        return 1
    os.replace(tmp, args.out)
    print(f"make-kquant-model: wrote {args.out} ({counts}), tensors sha256 {digest}")
    if args.write_reference:
        write_reference(args.out, digest, counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
