#!/usr/bin/env python3
"""Writes the safetensors parser's negative fixtures and the fuzzer's seed corpus.

tests/fixtures/malformed_safetensors/*.safetensors   one small file per hardening check;
tests/fixtures/malformed_safetensors/expected.json   file -> {"stage": "parse" | "read",
    "error": substring of the status message}: "parse" files are refused by
    SafetensorsFile::Open, "read" files parse but one tensor's ReadF32 fails
    (tests/gguf/safetensors_test.cpp);
tests/fixtures/safetensors_seed/*.safetensors        small valid files, with
tests/fixtures/safetensors_seed/values.json          file -> tensor -> {"dtype", "shape",
    "values"}: the values as Python's struct module decodes the bytes (F16 via 'e', BF16 as
    the top half of an F32), the reference for the parser's fp32 conversion.

Standard library only. Deterministic: rerunning rewrites identical files.
Usage: scripts/make-malformed-safetensors.py [--out-dir tests/fixtures]
"""
import argparse
import json
import os
import random
import struct

DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


def raw_file(header_bytes, data=b"", length=None):
    """An 8-byte little-endian header length (default: the real one), header, data."""
    n = len(header_bytes) if length is None else length
    return struct.pack("<Q", n & 0xFFFFFFFFFFFFFFFF) + header_bytes + data


def header_file(header, data=b""):
    """`header` serialized as JSON (a str is used verbatim), padded with spaces to 8 bytes as
    the reference writer does."""
    text = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    b = text.encode("utf-8")
    b += b" " * (-len(b) % 8)
    return raw_file(b, data)


def encode(dtype, values):
    if dtype == "F32":
        return b"".join(struct.pack("<f", v) for v in values)
    if dtype == "F16":
        return b"".join(struct.pack("<e", v) for v in values)
    # BF16: the top 16 bits of the F32 (the values below are exactly representable)
    return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:] for v in values)


def decode(dtype, data):
    n = len(data) // DTYPE_BYTES[dtype]
    if dtype == "F32":
        return list(struct.unpack("<%df" % n, data))
    if dtype == "F16":
        return list(struct.unpack("<%de" % n, data))
    return [struct.unpack("<f", b"\0\0" + data[2 * i:2 * i + 2])[0] for i in range(n)]


def tensors_file(tensors, metadata=None):
    """A valid file: tensors = [(name, dtype, shape, values)], laid out in list order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, values in tensors:
        b = encode(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    return header_file(header, data)


def one(entry, data=b"\0" * 16, name="w"):
    return header_file({name: entry}, data)


def f32_entry(shape=(2, 2), offsets=(0, 16)):
    return {"dtype": "F32", "shape": list(shape), "data_offsets": list(offsets)}


def malformed():
    """name -> (bytes, stage, expected error substring)."""
    cases = {}

    def add(name, data, error, stage="parse"):
        cases[name] = (data, stage, error)

    # ---- header length and JSON
    add("empty", b"", "0 bytes, too short for the 8-byte header length")
    add("short_file", b"\x02\0\0\0\0", "5 bytes, too short for the 8-byte header length")
    add("header_length_huge", raw_file(b"{}", length=1 << 63), "header length 9223372036854775808 exceeds the cap")
    add("header_length_over_cap", raw_file(b"{}", length=(100 << 20) + 1), "exceeds the cap of 104857600 bytes")
    add("header_length_past_end", raw_file(b"{}      ", length=1000), "header length 1000 runs past the end of the file (size 16)")
    add("header_length_zero", raw_file(b"", length=0), "header does not start with '{'")
    add("header_array", header_file("[1, 2]"), "header does not start with '{'")
    add("header_leading_space", header_file(' {"w": 1}'), "header does not start with '{'")
    add("header_invalid_json", header_file('{"w": tru}'), "header is not valid JSON")
    add("header_truncated_json", header_file('{"w": {"dtype": "F32", "sha'), "header is not valid JSON")
    add("header_trailing_garbage", header_file('{} x'), "header is not valid JSON")
    add("header_invalid_utf8", raw_file(b'{"w\xff": 1}    '), "header is not valid JSON")
    add("header_nul_padding", raw_file(b"{}\0\0\0\0\0\0"), "header is not valid JSON")
    add("header_too_deep", header_file('{"w": ' + "[" * 20 + "]" * 20 + "}"), "header JSON nests deeper than 8 levels")
    add("header_too_deep_objects", header_file('{"a":' * 12 + "1" + "}" * 12), "header JSON nests deeper than 8 levels")
    add("duplicate_tensor", header_file('{"w": %s, "w": %s}' % (json.dumps(f32_entry()), json.dumps(f32_entry())),
                                        b"\0" * 16), "header has the key 'w' twice")
    add("duplicate_field", header_file('{"w": {"dtype": "F32", "dtype": "I64", "shape": [2, 2], '
                                       '"data_offsets": [0, 16]}}', b"\0" * 16), "header has the key 'dtype' twice")
    add("duplicate_metadata_key", header_file('{"__metadata__": {"k": "a", "k": "b"}}'), "header has the key 'k' twice")
    add("empty_name", one(f32_entry(), name=""), "a tensor has an empty name")

    # ---- __metadata__
    add("metadata_not_object", header_file({"__metadata__": 3}), "'__metadata__' is an integer, expected an object of strings")
    add("metadata_value_not_string", header_file({"__metadata__": {"format": 1}}),
        "'__metadata__' entry 'format' is an integer, expected a string")
    add("metadata_value_null", header_file({"__metadata__": {"format": None}}),
        "'__metadata__' entry 'format' is null, expected a string")

    # ---- tensor entries
    add("entry_not_object", one([1, 2]), "tensor 'w': entry is an array, expected an object")
    add("entry_unknown_field", one(dict(f32_entry(), offsets=[0, 16])), "tensor 'w': unknown field 'offsets'")
    for field in ("dtype", "shape", "data_offsets"):
        e = f32_entry()
        del e[field]
        add("entry_missing_" + field, one(e), "tensor 'w': missing field '%s'" % field)
    add("dtype_not_string", one(dict(f32_entry(), dtype=0)), "tensor 'w': 'dtype' is an integer, expected a string")
    for dt in ("I64", "F64", "U8", "BOOL", "F8_E4M3", "I32"):
        add("dtype_" + dt.lower(), one(dict(f32_entry(), dtype=dt)),
            "tensor 'w': dtype '%s' is not supported (supported: BF16, F16, F32)" % dt)
    add("dtype_unknown", one(dict(f32_entry(), dtype="F33")), "tensor 'w': dtype 'F33' is unknown")
    add("dtype_lowercase", one(dict(f32_entry(), dtype="f32")), "tensor 'w': dtype 'f32' is unknown")
    add("name_control_chars", one(dict(f32_entry(), dtype="Q4"), name="w\u0001\n"), "tensor 'w\\x01\\x0a': dtype 'Q4'")
    add("shape_not_array", one(dict(f32_entry(), shape="2x2")), "tensor 'w': 'shape' is a string, expected an array")
    add("shape_negative", one(f32_entry(shape=(4, -1))), "tensor 'w': shape[1] = -1 is negative")
    add("shape_float", one(f32_entry(shape=(2.0, 2))), "tensor 'w': shape[0] is a non-integer number")
    add("shape_string_dim", one(f32_entry(shape=("2", 2))), "tensor 'w': shape[0] is a string")
    add("shape_rank_9", one(f32_entry(shape=[1] * 9)), "tensor 'w': 'shape' has rank 9 (at most 8)")
    add("shape_dim_too_large", one(f32_entry(shape=(1 << 63, 1))), "shape[0] = 9223372036854775808 is too large")
    add("shape_beyond_uint64", header_file('{"w": {"dtype": "F32", "shape": [1e30], "data_offsets": [0, 4]}}', b"\0" * 4),
        "tensor 'w': shape[0] is a non-integer number")
    add("shape_overflow", one(f32_entry(shape=(1 << 32, 1 << 32))), "tensor 'w': element count of shape overflows")
    add("shape_bytes_overflow", one(f32_entry(shape=(1 << 31, 1 << 31), offsets=(0, 16))),
        "4611686018427387904 F32 elements take more than 2^64")
    add("offsets_not_array", one(dict(f32_entry(), data_offsets=16)), "'data_offsets' is an integer, expected [begin, end]")
    add("offsets_one_value", one(f32_entry(offsets=(16,))), "'data_offsets' is an array of 1 values, expected [begin, end]")
    add("offsets_three_values", one(f32_entry(offsets=(0, 8, 16))), "'data_offsets' is an array of 3 values")
    add("offsets_negative", one(f32_entry(offsets=(-16, 0))), "tensor 'w': data_offsets[0] = -16 is negative")
    add("offsets_float", one(f32_entry(offsets=(0, 16.5))), "tensor 'w': data_offsets[1] is a non-integer number")
    add("offsets_reversed", one(f32_entry(offsets=(16, 0)), b"\0" * 32), "tensor 'w': data_offsets [16, 0] end before they begin")
    add("offsets_size_mismatch", one(f32_entry(offsets=(0, 12)), b"\0" * 12),
        "tensor 'w': data_offsets [0, 12] span 12 bytes, but 4 F32 elements take 16")
    add("offsets_bf16_size_mismatch", one(dict(f32_entry(), dtype="BF16")),
        "tensor 'w': data_offsets [0, 16] span 16 bytes, but 4 BF16 elements take 8")

    # ---- coverage of the data section
    a, b = f32_entry(), f32_entry(offsets=(20, 36))
    add("data_gap", header_file({"a": a, "b": b}, b"\0" * 36), "tensor 'b' data [20, 36) leaves a gap of 4 bytes after tensor 'a'")
    add("data_not_from_zero", one(f32_entry(offsets=(4, 20)), b"\0" * 20),
        "tensor 'w' data [4, 20) leaves a gap of 4 bytes after the header")
    add("data_overlap", header_file({"a": f32_entry(), "b": f32_entry(offsets=(8, 24))}, b"\0" * 24),
        "tensor 'b' data [8, 24) overlaps tensor 'a', which ends at 16")
    add("data_same_range", header_file({"a": f32_entry(), "b": f32_entry()}, b"\0" * 16),
        "data [0, 16) overlaps tensor 'a', which ends at 16")
    add("data_past_end", one(f32_entry(), b"\0" * 15), "tensor 'w' data [0, 16) runs past the end of the data section (15 bytes)")
    add("data_past_end_huge", one(f32_entry(shape=(1 << 40,), offsets=(0, 1 << 42)), b"\0" * 16),
        "runs past the end of the data section (16 bytes)")
    add("data_trailing_bytes", one(f32_entry(), b"\0" * 20), "4 bytes at the end of the data section belong to no tensor")
    add("data_without_tensors", header_file({}, b"\0" * 8), "8 bytes at the end of the data section belong to no tensor")

    # ---- files that parse, with a value ReadF32 refuses
    nan32 = struct.pack("<I", 0x7FC00000)
    add("value_f32_nan", header_file({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
                                     struct.pack("<f", 1.0) + nan32), "tensor 'w' holds a non-finite value at element 1", "read")
    add("value_f16_inf", header_file({"w": {"dtype": "F16", "shape": [3], "data_offsets": [0, 6]}},
                                     struct.pack("<eeH", 0.5, -2.0, 0x7C00)), "tensor 'w' holds a non-finite value at element 2", "read")
    add("value_bf16_neg_inf", header_file({"w": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}},
                                          struct.pack("<H", 0xFF80)), "tensor 'w' holds a non-finite value at element 0", "read")
    return cases


def seeds():
    """name -> [(tensor, dtype, shape, values)] (+ metadata), valid files."""
    rng = random.Random(7)
    q = lambda n, scale=1.0: [round(rng.uniform(-scale, scale) * 64) / 64 for _ in range(n)]  # exact in F16/BF16
    return {
        "f32_matrix": ([("w", "F32", [3, 4], q(12))], None),
        "f16_bf16_mixed": ([("a.weight", "F16", [2, 8], q(16, 4)), ("b.bias", "BF16", [8], q(8, 100)),
                            ("c", "F32", [1, 1, 5], q(5))], {"format": "pt"}),
        "scalar_and_empty": ([("scalar", "F32", [], [2.5]), ("empty", "BF16", [0, 4], []), ("after", "F16", [2], [1.0, -1.0])],
                             {}),
        "metadata_only": ([], {"format": "pt", "note": "no tensors"}),
        "tiny_layer": ([("model.embed_tokens.weight", "BF16", [16, 8], q(128)),
                        ("model.layers.0.self_attn.q_proj.weight", "BF16", [8, 8], q(64)),
                        ("model.norm.weight", "F32", [8], q(8))], {"format": "pt"}),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    args = ap.parse_args()
    bad_dir = os.path.join(args.out_dir, "malformed_safetensors")
    seed_dir = os.path.join(args.out_dir, "safetensors_seed")
    for d in (bad_dir, seed_dir):
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if f.endswith(".safetensors") or f.endswith(".json"):
                os.remove(os.path.join(d, f))
    expected = {}
    for name, (data, stage, error) in sorted(malformed().items()):
        fn = name + ".safetensors"
        with open(os.path.join(bad_dir, fn), "wb") as f:
            f.write(data)
        expected[fn] = {"stage": stage, "error": error}
    with open(os.path.join(bad_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    values = {}
    for name, (tensors, metadata) in sorted(seeds().items()):
        fn = name + ".safetensors"
        data = tensors_file(tensors, metadata)
        with open(os.path.join(seed_dir, fn), "wb") as f:
            f.write(data)
        entry = {}
        for t, dtype, shape, vals in tensors:
            entry[t] = {"dtype": dtype, "shape": shape, "values": decode(dtype, encode(dtype, vals))}
        values[fn] = {"tensors": entry, "metadata": metadata or {}}
    with open(os.path.join(seed_dir, "values.json"), "w") as f:
        json.dump(values, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote %d malformed files to %s and %d seeds to %s" % (len(expected), bad_dir, len(values), seed_dir))


if __name__ == "__main__":
    main()
