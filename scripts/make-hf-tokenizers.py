#!/usr/bin/env python3
"""Writes Hugging Face tokenizer folders (tokenizer.json + tokenizer_config.json) for several
families to models/hf-tokenizers/<name>/, converted from our GGUFs by transformers' GGUF
tokenizer conversion, and models/hf-tokenizers/expected.json: the ids HF `tokenizers` gives for a
fixed string set (llama.cpp's test-tokenizer-0 strings plus chat markup), the reference of
tests/tokenizer/hf_tokenizer_test.cpp.

Two folders are derived rather than converted, with forms real tokenizer.json files have that the
GGUF conversion does not write: qwen2-variant is qwen2 with merges as "a b" strings, an NFC
normalizer (as Qwen2's own), bos/eos as AddedToken dicts and the chat template inside
tokenizer_config.json; llama-bpe-variant is llama-bpe with ignore_merges (as Llama-3's own).

Needs: transformers, tokenizers, gguf (scripts/setup.sh); the GGUFs of scripts/fetch-model.sh
and scripts/fetch-llamacpp-vocabs.sh. A second run with the same script and inputs is a no-op.
Usage: scripts/make-hf-tokenizers.py [--models-dir models]
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

# name -> (GGUF path relative to the models dir)
FAMILIES = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "llama-bpe": "llamacpp-vocab/ggml-vocab-llama-bpe.gguf",
    "llama-spm": "llamacpp-vocab/ggml-vocab-llama-spm.gguf",
    "phi-3": "llamacpp-vocab/ggml-vocab-phi-3.gguf",
    "qwen2": "llamacpp-vocab/ggml-vocab-qwen2.gguf",
    "gpt-2": "llamacpp-vocab/ggml-vocab-gpt-2.gguf",
    "falcon": "llamacpp-vocab/ggml-vocab-falcon.gguf",
    "starcoder": "llamacpp-vocab/ggml-vocab-starcoder.gguf",
    "deepseek-llm": "llamacpp-vocab/ggml-vocab-deepseek-llm.gguf",
}

CHAT_STRINGS = [
    "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "<s>[INST] Hello, how are you? [/INST] Fine.</s>",
    "<|user|>\nWrite a haiku.<|end|>\n<|assistant|>\n",
    "<|endoftext|>plain <|endoftext|> text",
    "caf\u0065\u0301 na\u00efve \u212b \ufb01",  # decomposed e-acute, Angstrom sign, fi ligature (NFC differs)
]


def read_inp_strings(path):
    with open(path, encoding="utf-8") as f:
        raw = f.read()
    return raw.split("\n__ggml_vocab_test__\n")


def sha256_of(paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def make_variant(src, dst):
    """qwen2 with string merges, NFC, AddedToken-dict bos/eos and an inline chat template."""
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    tj["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in tj["model"]["merges"]]
    tj["normalizer"] = {"type": "NFC"}
    with open(os.path.join(dst, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    with open(os.path.join(src, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    tmpl_path = os.path.join(src, "chat_template.jinja")
    if os.path.exists(tmpl_path):
        with open(tmpl_path, encoding="utf-8") as f:
            cfg["chat_template"] = f.read()
    for key in ("bos_token", "eos_token"):
        if isinstance(cfg.get(key), str):
            cfg[key] = {"__type": "AddedToken", "content": cfg[key], "lstrip": False, "rstrip": False,
                        "normalized": False, "single_word": False, "special": True}
    cfg["add_bos_token"] = False
    cfg["add_eos_token"] = False
    with open(os.path.join(dst, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)


def make_ignore_merges_variant(src, dst):
    shutil.copytree(src, dst)
    tj_path = os.path.join(dst, "tokenizer.json")
    with open(tj_path, encoding="utf-8") as f:
        tj = json.load(f)
    tj["model"]["ignore_merges"] = True
    with open(tj_path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default=os.path.join(os.path.dirname(__file__), "..", "models"))
    args = ap.parse_args()
    models = os.path.abspath(args.models_dir)
    out_dir = os.path.join(models, "hf-tokenizers")
    inp = os.path.join(models, "llamacpp-vocab", "ggml-vocab-llama-bpe.gguf.inp")
    module = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_gguf_tokenizer.py")
    inputs = [os.path.abspath(__file__), module, inp] + [os.path.join(models, g) for g in FAMILIES.values()]
    for p in inputs:
        if not os.path.exists(p):
            sys.exit(f"make-hf-tokenizers: {p} is missing (run scripts/fetch-model.sh and "
                     "scripts/fetch-llamacpp-vocabs.sh)")
    stamp = sha256_of(inputs[:3]) + " " + " ".join(str(os.path.getsize(p)) for p in inputs[3:])
    expected_path = os.path.join(out_dir, "expected.json")
    if os.path.exists(expected_path):
        with open(expected_path, encoding="utf-8") as f:
            if json.load(f).get("stamp") == stamp:
                print(f"make-hf-tokenizers: {out_dir} up to date")
                return

    import tokenizers
    import transformers
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from hf_gguf_tokenizer import write_hf_tokenizer_of

    transformers.logging.set_verbosity_error()
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    for name, gguf in FAMILIES.items():
        path = os.path.join(models, gguf)
        write_hf_tokenizer_of(path, os.path.join(out_dir, name))
    make_variant(os.path.join(out_dir, "qwen2"), os.path.join(out_dir, "qwen2-variant"))
    make_ignore_merges_variant(os.path.join(out_dir, "llama-bpe"), os.path.join(out_dir, "llama-bpe-variant"))

    strings = read_inp_strings(inp) + CHAT_STRINGS
    expected = {"stamp": stamp, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                "strings": strings, "tokenizers_ids": {}}
    for name in list(FAMILIES) + ["qwen2-variant", "llama-bpe-variant"]:
        t = tokenizers.Tokenizer.from_file(os.path.join(out_dir, name, "tokenizer.json"))
        expected["tokenizers_ids"][name] = [t.encode(s, add_special_tokens=False).ids for s in strings]
    with open(expected_path, "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=0)
    print(f"make-hf-tokenizers: wrote {len(FAMILIES) + 2} tokenizer folders and {expected_path}")


if __name__ == "__main__":
    main()
