#!/usr/bin/env python3
"""Writes tests/fixtures/quant_reference.json: dequantization references from the Python `gguf`
package (gguf.quants.dequantize), independent of our C++ kernels.

* model_rows: the first 64 values of rows 0 and 7 of a few tensors of the default model;
* synthetic: random blocks of every type we dequantize (raw bytes as hex, fp16 scales kept
  finite) with their dequantized values. Every bit pattern of the quants is a valid block, so
  random bytes cover types the package cannot quantize (Q2_K, Q3_K, IQ4_NL, IQ4_XS);
* nonfinite_scales: blocks of those types with a NaN or infinite fp16 scale, which ggml (and the
  package) dequantize to non-finite values rather than reject.

Needs: pip install gguf numpy; the default model (scripts/fetch-model.sh).
Usage: scripts/make-quant-fixtures.py [--model PATH] [--out PATH]
"""
import argparse
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader
from gguf.quants import dequantize

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TENSORS = ["token_embd.weight", "blk.0.attn_q.weight", "blk.3.ffn_down.weight"]
ROWS = [0, 7]
N_VALUES = 64

# type -> (block elements, block bytes, byte offsets of fp16 scales inside a block)
SYNTHETIC = {
    Q.F16: (1, 2, []), Q.BF16: (1, 2, []), Q.Q4_0: (32, 18, [0]), Q.Q4_1: (32, 20, [0, 2]),
    Q.Q5_0: (32, 22, [0]), Q.Q5_1: (32, 24, [0, 2]), Q.Q8_0: (32, 34, [0]),
    Q.Q4_K: (256, 144, [0, 2]), Q.Q5_K: (256, 176, [0, 2]), Q.Q6_K: (256, 210, [208]),
    # Appended after the types above so that their random draws stay as they were.
    Q.Q2_K: (256, 84, [80, 82]), Q.Q3_K: (256, 110, [108]), Q.IQ4_NL: (32, 18, [0]),
    Q.IQ4_XS: (256, 136, [0]),
}
# (type, byte offset of the fp16 scale to poison, its value as fp16 bits): NaN, +inf, -inf
NONFINITE = [(Q.Q2_K, 80, 0x7E00), (Q.Q2_K, 82, 0x7C00), (Q.Q3_K, 108, 0xFC00),
             (Q.IQ4_NL, 0, 0x7E00), (Q.IQ4_XS, 0, 0x7C00)]


def f32_list(a):
    """float32 values as JSON numbers; non-finite ones as the strings "inf", "-inf", "nan"."""
    out = []
    for x in np.asarray(a, dtype=np.float32).ravel():
        x = float(x)
        out.append(x if np.isfinite(x) else ("nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")))
    return out


def model_rows(path):
    reader = GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    out = []
    for name in TENSORS:
        t = by_name[name]
        values = dequantize(t.data, t.tensor_type)  # [ne1, ne0]
        for row in ROWS:
            out.append({"tensor": name, "type": t.tensor_type.name, "row": row,
                        "row_length": int(t.shape[0]), "values": f32_list(values[row, :N_VALUES])})
    return out


def synthetic(rng):
    out = []
    for qtype, (be, bb, scale_offsets) in SYNTHETIC.items():
        n_blocks = 2 if be > 1 else 64
        if qtype == Q.F16:
            raw = rng.standard_normal(n_blocks).astype(np.float16).view(np.uint8)
            # fp16 edge cases: subnormals, +-0, +-inf, max finite, smallest normal, NaNs
            edge = np.array([0x0001, 0x03FF, 0x8001, 0x0000, 0x8000, 0x7C00, 0xFC00, 0x7BFF, 0x0400,
                             0x7E00, 0xFE01],
                            dtype=np.uint16).view(np.uint8)
            raw = np.concatenate([raw, edge])
        elif qtype == Q.BF16:
            raw = (rng.standard_normal(n_blocks).astype(np.float32).view(np.uint32) >> 16) \
                .astype(np.uint16).view(np.uint8)
        else:
            raw = rng.integers(0, 256, size=(n_blocks, bb), dtype=np.uint8)
            for off in scale_offsets:
                scales = rng.uniform(-0.05, 0.05, size=n_blocks).astype(np.float16)
                raw[:, off:off + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
            raw = raw.ravel()
        out.append(entry(qtype, raw))
    return out


def entry(qtype, raw):
    with np.errstate(invalid="ignore"):  # inf * 0 = nan is the point of nonfinite_scales
        values = dequantize(raw, qtype)
    return {"type": qtype.name, "type_id": int(qtype), "n": int(values.size),
            "hex": raw.tobytes().hex(), "values": f32_list(values)}


def nonfinite_scales(rng):
    out = []
    for qtype, off, bits in NONFINITE:
        be, bb, scale_offsets = SYNTHETIC[qtype]
        raw = rng.integers(0, 256, size=(2, bb), dtype=np.uint8)
        for o in scale_offsets:
            raw[:, o:o + 2] = rng.uniform(-0.05, 0.05, size=2).astype(np.float16).view(np.uint8).reshape(2, 2)
        raw[0, off:off + 2] = np.array([bits], dtype=np.uint16).view(np.uint8)  # first block only
        out.append(entry(qtype, raw.ravel()))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "quant_reference.json"))
    args = ap.parse_args()
    doc = {
        "generator": "scripts/make-quant-fixtures.py (gguf.quants.dequantize)",
        "model": os.path.basename(args.model),
        "model_rows": model_rows(args.model),
        "synthetic": synthetic(np.random.default_rng(1234)),
        "nonfinite_scales": nonfinite_scales(np.random.default_rng(5678)),
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")
    print(f"wrote {args.out}: {len(doc['model_rows'])} model rows, {len(doc['synthetic'])} synthetic types, "
          f"{len(doc['nonfinite_scales'])} non-finite scale cases")


if __name__ == "__main__":
    main()
