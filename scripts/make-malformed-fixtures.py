#!/usr/bin/env python3
"""Writes the GGUF parser's negative fixtures and the fuzzer's seed corpus.

tests/fixtures/malformed/*.gguf   one small (< 4 KB) file per hardening check, plus files that
                                  parse but carry out-of-range hyperparameters;
tests/fixtures/malformed/expected.json
                                  file -> {"stage": "parse" | "config" | "load", "error": substring
                                  of the status message[, "code": status code when not
                                  InvalidArgument]}, read by tests/gguf/malformed_test.cpp (parse,
                                  config) and tests/engine/model_test.cpp (load: Model::Load);
tests/fixtures/gguf_seed/*.gguf   small valid files (a 1-layer llama, every type and value type).

Standard library only. Deterministic: rerunning rewrites identical files.
Usage: scripts/make-malformed-fixtures.py [--out-dir tests/fixtures]
"""
import argparse
import json
import os
import random
import struct

# ---- GGUF encoding -------------------------------------------------------------------------

T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
SCALAR_FMT = {T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i",
              T_F32: "<f", T_BOOL: "<B", T_U64: "<Q", T_I64: "<q", T_F64: "<d"}

# ggml type -> (block elements, block bytes)
F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 = 0, 1, 2, 3, 6, 7, 8, 9
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, BF16 = 10, 11, 12, 13, 14, 15, 30
BLOCK = {F32: (1, 4), F16: (1, 2), BF16: (1, 2), Q4_0: (32, 18), Q4_1: (32, 20), Q5_0: (32, 22),
         Q5_1: (32, 24), Q8_0: (32, 34), Q8_1: (32, 36), Q2_K: (256, 84), Q3_K: (256, 110),
         Q4_K: (256, 144), Q5_K: (256, 176), Q6_K: (256, 210), Q8_K: (256, 292)}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def value(t, v):
    """Encodes a value of GGUF type t (for arrays v = (elem_type, [items]))."""
    if t == T_STR:
        return gstr(v)
    if t == T_ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(value(et, x) for x in items)
    return struct.pack(SCALAR_FMT[t], v)


def kv(key, t, v):
    return gstr(key) + struct.pack("<I", t) + value(t, v)


def tensor_info(name, dims, ttype, offset):
    return gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d & 0xFFFFFFFFFFFFFFFF) for d in dims) \
        + struct.pack("<IQ", ttype, offset)


def nbytes(dims, ttype):
    n = 1
    for d in dims:
        n *= d
    be, bb = BLOCK[ttype]
    return n // be * bb


def align_up(x, a):
    return (x + a - 1) // a * a


def header(version, n_tensors, n_kv, magic=b"GGUF"):
    return magic + struct.pack("<IQQ", version, n_tensors, n_kv)


def gguf(kvs, tensors, version=3, alignment=32, rng=None, n_kv=None, n_tensors=None):
    """A GGUF file: kvs = [encoded kv bytes], tensors = [(name, dims, type)] laid out in order
    with aligned offsets and (seeded) random data. n_kv / n_tensors override the header counts."""
    rng = rng or random.Random(0)
    infos, offset = [], 0
    for name, dims, ttype in tensors:
        infos.append(tensor_info(name, dims, ttype, offset))
        offset = align_up(offset + nbytes(dims, ttype), alignment)
    out = header(version, len(tensors) if n_tensors is None else n_tensors,
                 len(kvs) if n_kv is None else n_kv)
    out += b"".join(kvs) + b"".join(infos)
    if tensors:
        out += b"\0" * (align_up(len(out), alignment) - len(out))
        for name, dims, ttype in tensors:
            data = random_tensor_bytes(dims, ttype, rng)
            out += data + b"\0" * (align_up(len(data), alignment) - len(data))
    return out


def random_tensor_bytes(dims, ttype, rng):
    """Random blocks whose fp16 scales are small finite numbers (so dequantized values are sane)."""
    n = nbytes(dims, ttype)
    if ttype == F32:
        return b"".join(struct.pack("<f", rng.uniform(-1, 1)) for _ in range(n // 4))
    if ttype in (F16, BF16):
        fmt = "<e" if ttype == F16 else None
        vals = [rng.uniform(-1, 1) for _ in range(n // 2)]
        if fmt:
            return b"".join(struct.pack(fmt, v) for v in vals)
        return b"".join(struct.pack("<f", v)[2:] for v in vals)  # bf16 = top half of f32
    be, bb = BLOCK[ttype]
    out = bytearray(rng.getrandbits(8) for _ in range(n))
    scale_at = {Q4_0: [0], Q4_1: [0, 2], Q5_0: [0], Q5_1: [0, 2], Q8_0: [0], Q8_1: [0, 2],
                Q2_K: [80, 82], Q3_K: [108], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208], Q8_K: []}[ttype]
    for b in range(0, n, bb):
        for off in scale_at:
            out[b + off:b + off + 2] = struct.pack("<e", rng.uniform(0.001, 0.05))
    return bytes(out)


# ---- a tiny llama ----------------------------------------------------------------------------

def llama_kvs(overrides=None, drop=(), arch="llama"):
    """Metadata of a 1-layer llama: d_model 32, 2 heads of 16, 1 kv head, ff 64, vocab 16."""
    a = arch
    fields = {
        "general.architecture": (T_STR, arch),
        "general.name": (T_STR, "tiny-llama"),
        f"{a}.block_count": (T_U32, 1),
        f"{a}.context_length": (T_U32, 256),
        f"{a}.embedding_length": (T_U32, 32),
        f"{a}.feed_forward_length": (T_U32, 64),
        f"{a}.attention.head_count": (T_U32, 2),
        f"{a}.attention.head_count_kv": (T_U32, 1),
        f"{a}.rope.freq_base": (T_F32, 10000.0),
        f"{a}.attention.layer_norm_rms_epsilon": (T_F32, 1e-5),
        f"{a}.vocab_size": (T_U32, 16),
    }
    for k, v in (overrides or {}).items():
        fields[k] = v
    return [kv(k, t, v) for k, (t, v) in fields.items() if k not in drop]


def llama_tensors(full=False):
    t = [("token_embd.weight", [32, 16], Q8_0), ("blk.0.attn_norm.weight", [32], F32)]
    if full:
        t += [("blk.0.attn_q.weight", [32, 32], Q4_0), ("blk.0.attn_k.weight", [32, 16], Q4_1),
              ("blk.0.attn_v.weight", [32, 16], Q8_0), ("blk.0.attn_output.weight", [32, 32], Q4_0),
              ("blk.0.ffn_norm.weight", [32], F32), ("blk.0.ffn_gate.weight", [32, 64], Q4_1),
              ("blk.0.ffn_up.weight", [32, 64], Q4_0), ("blk.0.ffn_down.weight", [64, 32], Q8_0),
              ("output_norm.weight", [32], F32)]
    return t


def tokenizer_kvs(n=16):
    toks = ["<unk>", "<s>", "</s>"] + [chr(ord("a") + i) for i in range(n - 3)]
    return [kv("tokenizer.ggml.model", T_STR, "gpt2"),
            kv("tokenizer.ggml.tokens", T_ARR, (T_STR, toks)),
            kv("tokenizer.ggml.token_type", T_ARR, (T_I32, [3, 3, 3] + [1] * (n - 3))),
            kv("tokenizer.ggml.bos_token_id", T_U32, 1),
            kv("tokenizer.ggml.eos_token_id", T_U32, 2)]


def every_value_type_kvs():
    return [kv("test.u8", T_U8, 200), kv("test.i8", T_I8, -100), kv("test.u16", T_U16, 60000),
            kv("test.i16", T_I16, -30000), kv("test.u32", T_U32, 4000000000),
            kv("test.i32", T_I32, -2000000000), kv("test.f32", T_F32, 1.5),
            kv("test.bool", T_BOOL, 1), kv("test.str", T_STR, "héllo"),
            kv("test.u64", T_U64, 2**63 + 5), kv("test.i64", T_I64, -(2**62)),
            kv("test.f64", T_F64, -2.25),
            kv("test.arr_i16", T_ARR, (T_I16, [1, -2, 3])),
            kv("test.arr_f32", T_ARR, (T_F32, [0.5, -0.25])),
            kv("test.arr_str", T_ARR, (T_STR, ["x", "", "yz"])),
            kv("test.nested", T_ARR, (T_ARR, [(T_U8, [1, 2]), (T_U8, []), (T_U8, [3])]))]


# ---- cases ------------------------------------------------------------------------------------

def malformed_cases():
    """Yields (file name, bytes, stage, expected substring)."""
    base_kv = llama_kvs()
    t1 = [("a.weight", [32], F32)]  # one 128-byte tensor
    ok_header = header(3, 0, 0)

    yield "empty.gguf", b"", "parse", "file is empty"
    yield "truncated_magic.gguf", b"GG", "parse", "truncated: reading magic"
    yield "truncated_header.gguf", b"GGUF" + struct.pack("<I", 3) + b"\x01\x00", "parse", \
        "truncated: reading tensor count"
    yield "bad_magic.gguf", b"GGML" + ok_header[4:], "parse", "bad magic"
    yield "version_1.gguf", header(1, 0, 0), "parse", "unsupported GGUF version 1 "
    yield "version_4.gguf", header(4, 0, 0), "parse", "unsupported GGUF version 4 "
    yield "version_big_endian.gguf", b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "parse", "big-endian"
    yield "kv_count_huge.gguf", gguf(base_kv, [], n_kv=2**40), "parse", \
        "metadata kv count 1099511627776 exceeds what the remaining"
    yield "tensor_count_huge.gguf", gguf(base_kv, [], n_tensors=2**62), "parse", \
        "tensor count 4611686018427387904 exceeds what the remaining"
    yield "kv_count_short.gguf", gguf(base_kv, [], n_kv=len(base_kv) + 1), "parse", "truncated"

    # strings and keys
    yield "key_length_huge.gguf", ok_header[:-8] + struct.pack("<Q", 1) + struct.pack("<Q", 2**62) + b"abc" + b"\0" * 16, \
        "parse", "metadata kv #0 key length 4611686018427387904 exceeds the limit of 65535"
    yield "key_too_long.gguf", header(3, 0, 1) + struct.pack("<Q", 65536) + b"k" * 64, "parse", \
        "key length 65536 exceeds the limit of 65535"
    yield "key_empty.gguf", header(3, 0, 1) + gstr("") + struct.pack("<I", T_U8) + b"\x01", "parse", \
        "metadata kv #0 has an empty key"
    yield "key_not_utf8.gguf", header(3, 0, 1) + gstr(b"bad\xff\xfekey") + struct.pack("<I", T_U8) + b"\x01", \
        "parse", "is not valid UTF-8"
    yield "key_truncated.gguf", header(3, 0, 1) + struct.pack("<Q", 40) + b"general.arch", "parse", \
        "truncated: metadata kv #0 key has length 40"
    yield "string_value_length_huge.gguf", \
        header(3, 0, 1) + gstr("general.name") + struct.pack("<IQ", T_STR, 2**60) + b"xyz", "parse", \
        "truncated: key 'general.name' has length 1152921504606846976"
    yield "duplicate_key.gguf", gguf(base_kv + [kv("general.architecture", T_STR, "llama")], []), \
        "parse", "duplicate metadata key 'general.architecture'"
    yield "unknown_value_type.gguf", header(3, 0, 1) + gstr("x.y") + struct.pack("<I", 13) + b"\0" * 8, \
        "parse", "key 'x.y' has unknown value type 13"
    yield "bool_not_0_or_1.gguf", gguf([kv("x.flag", T_BOOL, 7)], []), "parse", \
        "bool value 7 is neither 0 nor 1"
    yield "truncated_kv_value.gguf", gguf(base_kv, [])[:-2], "parse", "truncated: reading key"

    # arrays
    yield "array_length_huge.gguf", \
        header(3, 0, 1) + gstr("x.arr") + struct.pack("<IIQ", T_ARR, T_U32, 2**50) + b"\0" * 16, "parse", \
        "array of 1125899906842624 uint32 values cannot fit in the remaining 16 bytes"
    yield "array_of_strings_length_huge.gguf", \
        header(3, 0, 1) + gstr("x.arr") + struct.pack("<IIQ", T_ARR, T_STR, 2**32) + gstr("a"), "parse", \
        "array of 4294967296 string values cannot fit"
    nest = (T_U8, [1])
    for _ in range(4):
        nest = (T_ARR, [nest])
    yield "array_nested_too_deep.gguf", gguf([kv("x.deep", T_ARR, nest)], []), "parse", \
        "arrays nested deeper than 4 levels"
    yield "array_unknown_element_type.gguf", \
        header(3, 0, 1) + gstr("x.arr") + struct.pack("<IIQ", T_ARR, 42, 1) + b"\0" * 8, "parse", \
        "unknown array element type 42"
    yield "array_element_truncated.gguf", \
        gguf([kv("x.arr", T_ARR, (T_U32, [1, 2, 3, 4]))], [])[:-3], "parse", \
        "key 'x.arr': array of 4 uint32 values cannot fit in the remaining 13 bytes"

    # alignment
    yield "alignment_zero.gguf", gguf([kv("general.alignment", T_U32, 0)], []), "parse", \
        "'general.alignment' = 0 is not a non-zero power of two"
    yield "alignment_not_power_of_two.gguf", gguf([kv("general.alignment", T_U32, 48)], []), "parse", \
        "'general.alignment' = 48 is not a non-zero power of two"
    yield "alignment_wrong_type.gguf", gguf([kv("general.alignment", T_STR, "32")], []), "parse", \
        "'general.alignment' must be an unsigned integer"
    yield "alignment_negative.gguf", gguf([kv("general.alignment", T_I32, -32)], []), "parse", \
        "'general.alignment' must be an unsigned integer"

    # tensor infos
    def one_tensor(name="a.weight", dims=(32,), ttype=F32, offset=0, n=1, tail=b"\0" * 128):
        return header(3, n, 0) + tensor_info(name, list(dims), ttype, offset) + \
            b"\0" * (align_up(24 + 8 + len(name) + 4 + 8 * len(dims) + 12, 32) -
                     (24 + 8 + len(name) + 4 + 8 * len(dims) + 12)) + tail

    yield "tensor_name_empty.gguf", one_tensor(name=""), "parse", "tensor info #0 has an empty name"
    yield "tensor_name_too_long.gguf", header(3, 1, 0) + struct.pack("<Q", 70000) + b"t" * 100, "parse", \
        "tensor info #0 name length 70000 exceeds the limit of 65535"
    yield "tensor_n_dims_zero.gguf", one_tensor(dims=()), "parse", "tensor 'a.weight' has n_dims 0"
    yield "tensor_n_dims_five.gguf", one_tensor(dims=(32, 1, 1, 1, 1)), "parse", \
        "tensor 'a.weight' has n_dims 5"
    yield "tensor_dim_zero.gguf", one_tensor(dims=(32, 0)), "parse", \
        "tensor 'a.weight' has dimension 1 = 0 (must be positive)"
    yield "tensor_dim_negative.gguf", one_tensor(dims=(32, -4)), "parse", \
        "tensor 'a.weight' has dimension 1 = -4 (must be positive)"
    yield "tensor_elements_overflow.gguf", one_tensor(dims=(2**32, 2**32)), "parse", \
        "tensor 'a.weight' element count overflows"
    yield "tensor_bytes_overflow.gguf", one_tensor(dims=(2**31, 2**31)), "parse", \
        "byte size of 4611686018427387904 elements of type F32 overflows"
    yield "tensor_type_unknown.gguf", one_tensor(ttype=4), "parse", \
        "tensor 'a.weight' has unknown or unsupported tensor type 4"
    yield "tensor_type_huge.gguf", one_tensor(ttype=0xFFFFFFFF), "parse", \
        "unknown or unsupported tensor type 4294967295"
    yield "tensor_row_not_block_multiple.gguf", one_tensor(dims=(48,), ttype=Q4_0), "parse", \
        "row length 48, not a multiple of the block size 32"
    yield "tensor_offset_unaligned.gguf", one_tensor(offset=4), "parse", \
        "tensor 'a.weight' data offset 4 is not a multiple of the alignment 32"
    yield "tensor_offset_unaligned_custom_alignment.gguf", \
        header(3, 1, 1) + kv("general.alignment", T_U32, 64) + tensor_info("a.weight", [32], F32, 32) + \
        b"\0" * 256, "parse", "data offset 32 is not a multiple of the alignment 64"
    yield "tensor_past_eof.gguf", one_tensor(dims=(32, 2)), "parse", \
        "tensor 'a.weight' data [offset 0, 256 bytes] runs past the end of the file"
    yield "tensor_offset_huge.gguf", one_tensor(offset=2**63), "parse", \
        "data [offset 9223372036854775808, 128 bytes] runs past the end of the file"
    yield "data_section_past_eof.gguf", one_tensor(name="abc", tail=b"")[:-1], "parse", \
        "data section would start at offset"
    yield "tensor_info_truncated.gguf", one_tensor(name="t" * 40)[:24 + 8 + 40 + 4], "parse", \
        "truncated: reading tensor 'tttttttttttttttttttttttttttttttttttttttt' dims"
    yield "tensor_count_short.gguf", one_tensor(n=2), "parse", "tensor info #1 has an empty name"

    two = [("a.weight", [32], F32, 0), ("b.weight", [32], F32, 128)]

    def tensors_at(entries, data_len=512):
        body = header(3, len(entries), 0) + b"".join(tensor_info(n, d, t, o) for n, d, t, o in entries)
        return body + b"\0" * (align_up(len(body), 32) - len(body)) + b"\0" * data_len

    yield "tensor_duplicate_name.gguf", tensors_at([two[0], ("a.weight", [32], F32, 128)]), "parse", \
        "duplicate tensor name 'a.weight'"
    yield "tensor_out_of_order.gguf", tensors_at([("a.weight", [32], F32, 128), ("b.weight", [32], F32, 0)]), \
        "parse", "tensor 'b.weight' data [offset 0, 128 bytes] is out of order"
    yield "tensor_overlap.gguf", tensors_at([("a.weight", [32], F32, 0), ("b.weight", [32], F32, 96)]), \
        "parse", "tensor 'b.weight' data [offset 96, 128 bytes] overlaps tensor 'a.weight'"
    yield "tensor_second_past_eof.gguf", tensors_at(two, data_len=200), "parse", \
        "tensor 'b.weight' data [offset 128, 128 bytes] runs past the end of the file"

    # hyperparameters: parse fine, ConfigFromGguf must refuse them
    t = llama_tensors()

    def cfg(name, overrides=None, drop=(), expect="", arch="llama"):
        return name, gguf(llama_kvs(overrides, drop, arch), t), "config", expect

    yield cfg("config_head_count_zero.gguf", {"llama.attention.head_count": (T_U32, 0)},
              expect="'llama.attention.head_count' = 0 is out of range [1, 1024]")
    yield cfg("config_head_count_kv_not_dividing.gguf",
              {"llama.attention.head_count": (T_U32, 4), "llama.embedding_length": (T_U32, 64),
               "llama.attention.head_count_kv": (T_U32, 3)},
              expect="'llama.attention.head_count_kv' = 3 does not divide 'llama.attention.head_count' = 4")
    yield cfg("config_head_count_kv_above_heads.gguf", {"llama.attention.head_count_kv": (T_U32, 4)},
              expect="'llama.attention.head_count_kv' = 4 is out of range [1, 2]")
    yield cfg("config_context_length_zero.gguf", {"llama.context_length": (T_U32, 0)},
              expect="'llama.context_length' = 0 is out of range")
    yield cfg("config_context_length_huge.gguf", {"llama.context_length": (T_U64, 2**40)},
              expect="'llama.context_length' = 1099511627776 is out of range")
    yield cfg("config_block_count_zero.gguf", {"llama.block_count": (T_U32, 0)},
              expect="'llama.block_count' = 0 is out of range [1, 512]")
    yield cfg("config_block_count_too_many.gguf", {"llama.block_count": (T_U32, 513)},
              expect="'llama.block_count' = 513 is out of range [1, 512]")
    yield cfg("config_block_count_negative.gguf", {"llama.block_count": (T_I32, -1)},
              expect="'llama.block_count' = -1 is out of range")
    yield cfg("config_block_count_string.gguf", {"llama.block_count": (T_STR, "30")},
              expect="'llama.block_count' is string")
    yield cfg("config_block_count_missing.gguf", drop=("llama.block_count",),
              expect="required metadata key 'llama.block_count' is missing")
    yield cfg("config_architecture_missing.gguf", drop=("general.architecture",),
              expect="required metadata key 'general.architecture' is missing")
    yield cfg("config_architecture_unsupported.gguf", arch="gpt2",
              expect="'general.architecture' = 'gpt2' is not supported")
    yield cfg("config_feed_forward_zero.gguf", {"llama.feed_forward_length": (T_U32, 0)},
              expect="'llama.feed_forward_length' = 0 is out of range")
    yield cfg("config_vocab_size_zero.gguf", {"llama.vocab_size": (T_U32, 0)},
              expect="'llama.vocab_size' = 0 is out of range")
    yield cfg("config_embedding_not_multiple_of_heads.gguf", {"llama.embedding_length": (T_U32, 33)},
              expect="'llama.embedding_length' = 33 is not a multiple of 'llama.attention.head_count' = 2")
    yield cfg("config_head_dim_odd.gguf", {"llama.embedding_length": (T_U32, 30)},
              expect="= 15 must be even")
    yield cfg("config_key_length_too_big.gguf", {"llama.attention.key_length": (T_U32, 1024)},
              expect="'llama.attention.key_length' = 1024 is out of range [2, 512]")
    yield cfg("config_rope_dim_above_head_dim.gguf", {"llama.rope.dimension_count": (T_U32, 32)},
              expect="'llama.rope.dimension_count' = 32 is out of range [2, 16]")
    yield cfg("config_rope_dim_odd.gguf", {"llama.rope.dimension_count": (T_U32, 7)},
              expect="'llama.rope.dimension_count' = 7 must be even")
    yield cfg("config_freq_base_negative.gguf", {"llama.rope.freq_base": (T_F32, -1.0)},
              expect="'llama.rope.freq_base' = -1 must be positive and finite")
    yield cfg("config_freq_base_inf.gguf", {"llama.rope.freq_base": (T_F32, float("inf"))},
              expect="'llama.rope.freq_base' = inf must be positive and finite")
    yield cfg("config_freq_base_nan.gguf", {"llama.rope.freq_base": (T_F32, float("nan"))},
              expect="'llama.rope.freq_base' = nan must be positive and finite")
    yield cfg("config_rms_eps_one.gguf", {"llama.attention.layer_norm_rms_epsilon": (T_F32, 1.0)},
              expect="'llama.attention.layer_norm_rms_epsilon' = 1 is not in (0, 1)")
    yield cfg("config_rms_eps_zero.gguf", {"llama.attention.layer_norm_rms_epsilon": (T_F32, 0.0)},
              expect="'llama.attention.layer_norm_rms_epsilon' = 0 is not in (0, 1)")
    yield cfg("config_rope_scaling_unknown.gguf", {"llama.rope.scaling.type": (T_STR, "yarn")},
              expect="'llama.rope.scaling.type' = 'yarn' is not supported")
    yield cfg("config_rope_scaling_factor_zero.gguf",
              {"llama.rope.scaling.type": (T_STR, "linear"), "llama.rope.scaling.factor": (T_F32, 0.0)},
              expect="'llama.rope.scaling.factor' = 0 must be positive")
    # known keys the model does not use are still checked for type, length and range
    def meta(name, extra, expect, tokenizer=True):
        kvs = llama_kvs() + (tokenizer_kvs() if tokenizer else []) + [kv(k, tt, v) for k, (tt, v) in extra.items()]
        return name, gguf(kvs, t), "config", expect

    yield meta("meta_scores_wrong_length.gguf", {"tokenizer.ggml.scores": (T_ARR, (T_F32, [0.0, 1.0, 2.0]))},
               "metadata key 'tokenizer.ggml.scores' has 3 entries, but 'tokenizer.ggml.tokens' has 16 tokens")
    yield meta("meta_scores_not_numbers.gguf", {"tokenizer.ggml.scores": (T_ARR, (T_STR, ["x"] * 16))},
               "metadata key 'tokenizer.ggml.scores' is array of 16 string, expected an array of numbers")
    def whole(name, kvs, expect):
        return name, gguf(kvs, t), "config", expect

    yield whole("meta_token_type_wrong_length.gguf", llama_kvs() + [
        kv("tokenizer.ggml.model", T_STR, "gpt2"),
        kv("tokenizer.ggml.tokens", T_ARR, (T_STR, [chr(ord("a") + i) for i in range(16)])),
        kv("tokenizer.ggml.token_type", T_ARR, (T_I32, [1] * 15))],
        "metadata key 'tokenizer.ggml.token_type' has 15 entries, but 'tokenizer.ggml.tokens' has 16 tokens")
    yield meta("meta_cls_token_id_out_of_range.gguf", {"tokenizer.ggml.cls_token_id": (T_U32, 99)},
               "metadata key 'tokenizer.ggml.cls_token_id' = 99 is not a token id (the vocabulary has 16 tokens)")
    yield meta("meta_add_space_prefix_not_bool.gguf", {"tokenizer.ggml.add_space_prefix": (T_STR, "yes")},
               "metadata key 'tokenizer.ggml.add_space_prefix' is string, expected a bool")
    yield meta("meta_chat_template_not_string.gguf", {"tokenizer.chat_template": (T_U32, 7)},
               "metadata key 'tokenizer.chat_template' is uint32 7, expected a string")
    yield meta("meta_merges_not_strings.gguf", {"tokenizer.ggml.merges": (T_ARR, (T_I32, [1, 2]))},
               "metadata key 'tokenizer.ggml.merges' is array of 2 int32, expected an array of strings")
    yield whole("meta_tokens_not_array.gguf",
                llama_kvs() + [kv("tokenizer.ggml.model", T_STR, "gpt2"), kv("tokenizer.ggml.tokens", T_STR, "abc")],
                "metadata key 'tokenizer.ggml.tokens' is string, expected an array of strings")
    yield meta("meta_rope_factor_unused_but_string.gguf", {"llama.rope.scaling.factor": (T_STR, "8")},
               "metadata key 'llama.rope.scaling.factor' is string, expected a number", tokenizer=False)
    yield meta("meta_value_length_without_key_length.gguf", {"llama.attention.value_length": (T_F32, 16.0)},
               "metadata key 'llama.attention.value_length' is float32, expected an integer", tokenizer=False)
    yield whole("meta_head_count_array.gguf",
                llama_kvs(drop=("llama.attention.head_count",)) + [kv("llama.attention.head_count", T_ARR, (T_U32, [2]))],
                "metadata key 'llama.attention.head_count' is array of 1 uint32, expected an integer")
    yield meta("meta_sliding_window_negative.gguf", {"llama.attention.sliding_window": (T_I32, -4)},
               "metadata key 'llama.attention.sliding_window' = -4 is out of range (must not be negative)", tokenizer=False)
    yield meta("meta_file_type_string.gguf", {"general.file_type": (T_STR, "Q4_1")},
               "metadata key 'general.file_type' is string, expected an integer", tokenizer=False)
    yield cfg("config_value_length_differs.gguf",
              {"llama.attention.key_length": (T_U32, 16), "llama.attention.value_length": (T_U32, 8)},
              expect="'llama.attention.value_length' = 8 differs")


def load_cases():
    """Files that parse and pass ConfigFromGguf but Model::Load must refuse, naming the tensor:
    yields (file name, bytes, expected substring, status code name)."""
    full = llama_tensors(full=True)
    biases = [("blk.0.attn_q.bias", [32], F32), ("blk.0.attn_k.bias", [16], F32), ("blk.0.attn_v.bias", [16], F32)]
    # A tokenizer Engine::Create accepts (byte-level BPE needs merges), so loading gets to the weights.
    tok = tokenizer_kvs() + [kv("tokenizer.ggml.merges", T_ARR, (T_STR, ["a b", "c d"]))]
    qwen = llama_kvs(arch="qwen2") + tok
    yield "load_qwen2_bias_missing.gguf", gguf(qwen, full + [b for b in biases if "attn_k" not in b[0]]), \
        "missing tensor 'blk.0.attn_k.bias' (qwen2 models carry Q, K and V biases)", "InvalidArgument"
    yield "load_qwen2_bias_wrong_shape.gguf", gguf(qwen, full + [("blk.0.attn_q.bias", [16], F32)] + biases[1:]), \
        "tensor 'blk.0.attn_q.bias' has shape [16], expected [32]", "InvalidArgument"
    yield "load_qwen2_no_biases.gguf", gguf(qwen, full), \
        "missing tensor 'blk.0.attn_q.bias'", "InvalidArgument"
    yield "load_llama_unknown_tensor.gguf", gguf(llama_kvs() + tok,
                                                 full + [("blk.0.attn_output.bias", [32], F32)]), \
        "tensor 'blk.0.attn_output.bias' is not used by this engine's llama layer loop", "Unimplemented"
    yield "load_llama_extra_layer.gguf", gguf(llama_kvs() + tok,
                                              full + [("blk.1.attn_norm.weight", [32], F32)]), \
        "tensor 'blk.1.attn_norm.weight' is not used", "Unimplemented"


def seed_cases():
    rng = random.Random(1)
    yield "tiny_llama_v3.gguf", gguf(llama_kvs() + tokenizer_kvs(), llama_tensors(full=True), rng=rng)
    types = [("f32", [4], F32), ("f16", [8, 2], F16), ("bf16", [8, 2], BF16), ("q4_0", [32, 2], Q4_0),
             ("q4_1", [32], Q4_1), ("q5_0", [32], Q5_0), ("q5_1", [32], Q5_1), ("q8_0", [32], Q8_0),
             ("q8_1", [32], Q8_1), ("q2_k", [256], Q2_K), ("q3_k", [256], Q3_K), ("q4_k", [256], Q4_K),
             ("q5_k", [256], Q5_K), ("q6_k", [256], Q6_K), ("q8_k", [256], Q8_K)]
    yield "all_types_v2_align64.gguf", gguf([kv("general.alignment", T_U32, 64)] + every_value_type_kvs(),
                                            types, version=2, alignment=64, rng=rng)
    yield "no_tensors.gguf", gguf(llama_kvs(), [])
    yield "tiny_llama_rope_llama3.gguf", gguf(llama_kvs({
        "llama.rope.scaling.type": (T_STR, "llama3"), "llama.rope.scaling.factor": (T_F32, 8.0),
        "llama.rope.scaling.original_context_length": (T_U32, 128),
        "llama.rope.scaling.low_freq_factor": (T_F32, 1.0), "llama.rope.scaling.high_freq_factor": (T_F32, 4.0),
        "llama.attention.key_length": (T_U32, 16), "llama.attention.value_length": (T_U32, 16)}),
        llama_tensors(), rng=rng)
    # vocab from the token list, legacy linear rope scale, qwen2 keys
    yield "tiny_qwen2_vocab_from_tokens.gguf", gguf(
        llama_kvs({"qwen2.rope.scale_linear": (T_F32, 2.0)}, drop=("qwen2.vocab_size",), arch="qwen2")
        + tokenizer_kvs(), llama_tensors(), rng=rng)
    # vocab from token_embd's dims, untied output
    yield "tiny_llama_vocab_from_embd.gguf", gguf(llama_kvs(drop=("llama.vocab_size",)),
                                                  llama_tensors() + [("output.weight", [32, 16], Q5_0)], rng=rng)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "..", "tests", "fixtures"))
    args = ap.parse_args()
    mal_dir = os.path.join(args.out_dir, "malformed")
    seed_dir = os.path.join(args.out_dir, "gguf_seed")
    os.makedirs(mal_dir, exist_ok=True)
    os.makedirs(seed_dir, exist_ok=True)

    expected = {}
    for name, data, stage, substring in malformed_cases():
        assert name not in expected, name
        assert len(data) < 4096, (name, len(data))
        with open(os.path.join(mal_dir, name), "wb") as f:
            f.write(data)
        expected[name] = {"stage": stage, "error": substring}
    for name, data, substring, code in load_cases():
        assert name not in expected, name
        assert len(data) < 16384, (name, len(data))  # a whole 1-layer model
        with open(os.path.join(mal_dir, name), "wb") as f:
            f.write(data)
        expected[name] = {"stage": "load", "error": substring, "code": code}
    with open(os.path.join(mal_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    for name, data in seed_cases():
        with open(os.path.join(seed_dir, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(expected)} malformed fixtures to {mal_dir} and seeds to {seed_dir}")


if __name__ == "__main__":
    main()
