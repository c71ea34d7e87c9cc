#!/usr/bin/env python3
"""CPU peer for `sliminfer-bench engine`: llama.cpp (through llama-cpp-python) on the same GGUF.

For each prompt length it measures
  * TTFT: eval of the whole prompt (n_batch 512) until the first token's logits are read and
    its argmax taken;
  * decode ms/token: greedy, one eval per token, --decode-tokens tokens after the first;
and prints one JSON object on stdout (progress goes to stderr):
  {"peer": "llama.cpp", "version": ..., "threads": ..., "results": [
     {"prompt_tokens": L, "ttft_ms": ..., "decode_ms_per_token": ...}, ...]}
Each number is the median of --repeat runs, after one untimed warm-up eval per context.

Prompts are the first L tokens of real English text: the license texts in
/usr/share/common-licenses in the same order and with the same "\\n\\n" separators as
`sliminfer-bench engine` uses, then the other license files and Python's own docs (module
docstrings) when that is too short; the corpus is repeated only if even that is too short
(reported as "corpus_repeated"). --dump-prompts DIR writes DIR/prompt_<L>.json (JSON list of
ids), the files `sliminfer-bench engine --prompt-ids-dir DIR` reads; --prompt-ids-file takes
such files (or a directory of them) so both engines run the exact same ids.

Usage: bench/llamacpp_peer.py [--model PATH] [--lengths 512,2048,8192] [--decode-tokens 32]
                              [--repeat N] [--threads N] [--prompt-ids-file F|DIR ...]
                              [--dump-prompts DIR [--dump-only]]
"""
import argparse
import glob
import json
import os
import pydoc
import statistics
import sys
import time

import numpy as np

import llama_cpp
from llama_cpp import Llama

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
LICENSES = "/usr/share/common-licenses"
# The order client/bench/main.cpp (BenchText) uses, so the default prompts are the same ids.
BENCH_LICENSES = ["GPL-3", "GPL-2", "LGPL-2.1", "Apache-2.0", "MPL-2.0", "GFDL-1.3", "Artistic",
                  "LGPL-3", "BSD"]
DOC_MODULES = ["argparse", "json", "unittest", "collections", "typing", "re", "asyncio",
               "subprocess", "threading", "logging", "pathlib", "dataclasses", "functools"]


def log(msg):
    print(f"llamacpp_peer: {msg}", file=sys.stderr, flush=True)


def corpus_texts():
    """(name, text) pieces in order: the bench licenses, the other licenses, Python docs."""
    seen = set()
    for name in BENCH_LICENSES:
        path = os.path.join(LICENSES, name)
        if os.path.isfile(path):
            seen.add(os.path.realpath(path))
            with open(path, encoding="utf-8", errors="replace") as f:
                yield name, f.read() + "\n\n"
    for path in sorted(glob.glob(os.path.join(LICENSES, "*"))):
        real = os.path.realpath(path)
        if real in seen or not os.path.isfile(real):
            continue
        seen.add(real)
        with open(real, encoding="utf-8", errors="replace") as f:
            yield os.path.basename(path), f.read() + "\n\n"
    for mod in DOC_MODULES:
        try:
            doc = pydoc.render_doc(__import__(mod), renderer=pydoc.plaintext)
        except Exception:  # a module missing from this Python: skip it
            continue
        yield f"pydoc {mod}", doc + "\n\n"


def build_stream(llm, n_needed):
    """Token ids of the corpus, at least n_needed long; (ids, sources, repeated). The pieces are
    joined first and tokenized as one text, as sliminfer-bench does, so that the ids at the joins
    match too."""
    text, sources, ids = "", [], []
    for name, piece in corpus_texts():
        text += piece
        sources.append(name)
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(ids) >= n_needed:
            return ids, sources, False
    if not ids:
        sys.exit("llamacpp_peer: no corpus text found")
    log(f"corpus has only {len(ids)} tokens; repeating it to reach {n_needed}")
    base = list(ids)
    while len(ids) < n_needed:
        ids += base
    return ids, sources, True


def read_ids(path):
    with open(path) as f:
        ids = json.load(f)
    if not isinstance(ids, list) or not all(isinstance(x, int) for x in ids):
        sys.exit(f"llamacpp_peer: {path}: expected a JSON list of token ids")
    return ids


def last_logits(llm):
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),))


def measure(args, prompt):
    n_ctx = len(prompt) + max(128, args.decode_tokens + 16)
    llm = Llama(args.model, n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=args.threads,
                n_threads_batch=args.threads, flash_attn=False, logits_all=False, seed=1234,
                verbose=False)
    llm.eval(prompt[:16])  # warm-up: first-use allocations and weight repacking
    ttfts, decodes, first = [], [], None
    for r in range(args.repeat):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        tok = int(np.argmax(last_logits(llm)))
        t1 = time.perf_counter()
        first = tok if first is None else first
        for _ in range(args.decode_tokens):
            llm.eval([tok])
            tok = int(np.argmax(last_logits(llm)))
        t2 = time.perf_counter()
        ttfts.append((t1 - t0) * 1e3)
        if args.decode_tokens:
            decodes.append((t2 - t1) * 1e3 / args.decode_tokens)
        log(f"{len(prompt)} tokens, run {r + 1}/{args.repeat}: TTFT {ttfts[-1]:.1f} ms, "
            f"decode {decodes[-1] if decodes else 0:.2f} ms/token")
    del llm
    return {"prompt_tokens": len(prompt), "ttft_ms": round(statistics.median(ttfts), 3),
            "decode_ms_per_token": round(statistics.median(decodes), 3) if decodes else None,
            "first_token": first, "ttft_ms_runs": [round(x, 3) for x in ttfts],
            "decode_ms_per_token_runs": [round(x, 3) for x in decodes]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--lengths", default="512,2048,8192",
                    help="comma-separated prompt lengths in tokens (default 512,2048,8192)")
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=1, help="runs per length; the median is reported")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--prompt-ids-file", action="append", default=[],
                    help="JSON list of token ids to use as a prompt (repeatable), or a directory "
                         "of prompt_<L>.json files for the --lengths; replaces the corpus prompts")
    ap.add_argument("--dump-prompts", metavar="DIR",
                    help="write the prompts used to DIR/prompt_<L>.json (JSON lists of ids)")
    ap.add_argument("--dump-only", action="store_true", help="with --dump-prompts: write them and exit")
    args = ap.parse_args()
    if args.repeat < 1 or args.decode_tokens < 0 or args.threads < 1:
        sys.exit("llamacpp_peer: --repeat and --threads must be >= 1, --decode-tokens >= 0")
    if not os.path.exists(args.model):
        sys.exit(f"llamacpp_peer: model {args.model} not found (run scripts/fetch-model.sh)")
    lengths = [int(x) for x in args.lengths.split(",") if x.strip()]

    vocab = Llama(args.model, vocab_only=True, verbose=False)
    # A vocab-only load leaves n_ctx_train at 0: read the context length from the metadata.
    arch = vocab.metadata.get("general.architecture", "llama")
    n_ctx_train = int(vocab.metadata.get(f"{arch}.context_length", 0))
    info = {"prompt_source": None, "corpus_repeated": False}
    prompts = []
    if args.prompt_ids_file:
        for path in args.prompt_ids_file:
            if os.path.isdir(path):
                prompts += [read_ids(os.path.join(path, f"prompt_{n}.json")) for n in lengths]
            else:
                prompts.append(read_ids(path))
        info["prompt_source"] = "prompt ids files: " + ", ".join(args.prompt_ids_file)
    else:
        stream, sources, repeated = build_stream(vocab, max(lengths))
        prompts = [stream[:n] for n in lengths]
        info["prompt_source"] = "first L tokens of: " + ", ".join(sources)
        info["corpus_repeated"] = repeated
    n_vocab = vocab.n_vocab()
    for p in prompts:
        if not p or min(p) < 0 or max(p) >= n_vocab:
            sys.exit(f"llamacpp_peer: a prompt has ids outside [0, {n_vocab})")
        if n_ctx_train and len(p) + args.decode_tokens > n_ctx_train:
            # llama.cpp runs past the trained context (RoPE extrapolates); fine for timing.
            log(f"note: {len(p)} + {args.decode_tokens} tokens exceed the trained context {n_ctx_train}")
    del vocab

    if args.dump_prompts:
        os.makedirs(args.dump_prompts, exist_ok=True)
        for p in prompts:
            with open(os.path.join(args.dump_prompts, f"prompt_{len(p)}.json"), "w") as f:
                json.dump(p, f)
        log(f"wrote {len(prompts)} prompts to {args.dump_prompts}")
        if args.dump_only:
            return

    results = [measure(args, p) for p in prompts]
    print(json.dumps({"peer": "llama.cpp", "version": f"llama-cpp-python {llama_cpp.__version__}",
                      "threads": args.threads, "n_batch": 512, "flash_attn": False,
                      "decode_tokens": args.decode_tokens, "repeat": args.repeat,
                      "model": os.path.basename(args.model), **info, "results": results}, indent=1))


if __name__ == "__main__":
    main()
