#!/usr/bin/env python3
"""Writes the llama.cpp reference fixtures our tokenizer and model tests compare against:

* tokens.json  - token ids of ~60 varied strings (vocab-only load, add_bos false, with and
                 without special-token parsing);
* logits.json  - five prompts of about 16, 64, 250, 500 and 1000 tokens of real English text
                 (license texts shipped in /usr/share/common-licenses and a Python stdlib
                 docstring; the texts are stored so the fixture is self-contained), with the
                 argmax and top-10 of the last position, plus logits_<name>.f32 holding all
                 last-position logits (n_vocab float32, little-endian);
* greedy.json  - 32-token greedy continuations of 2 plain and 2 ChatML prompts, by eval +
                 argmax over the raw logits (no llama.cpp sampler, so no penalties). The loop
                 does not stop at end-of-generation ids: compare with ignore_eos.

With --jinja the chat prompts are the model's own GGUF chat template rendered by Python's
jinja2 (messages and rendered text stored in greedy.json, so a test can check our template
renders the same text); without it, the fixed SmolLM2 ChatML text. --logit-cases picks the
logits prompts (by name) for models whose full set would be slow in CI.

Needs llama-cpp-python (built from source) and numpy (and jinja2 with --jinja); the model
(scripts/fetch-model.sh [NAME]). Usage:
  scripts/make-fixtures.py [--model PATH] [--out DIR] [--jinja] [--logit-cases p16,p250,...]
For the Qwen2 fixtures in CI:
  scripts/make-fixtures.py --model models/Qwen2.5-Coder-0.5B-Instruct.gguf \
      --out tests/fixtures/qwen2.5-coder-0.5b --jinja --logit-cases p16,p250,p1000
"""
import argparse as argparse_module
import hashlib
import json
import os
import re
import sys

import numpy as np

import llama_cpp
from llama_cpp import Llama

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
LICENSES = "/usr/share/common-licenses"
SEED = 1234
N_CTX = 2048
N_BATCH = 512
N_THREADS = 2
GREEDY_TOKENS = 32
CHATML_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# (text, parse_special). add_bos is always false (SmolLM2 does not add a BOS token).
TOKEN_CASES = [
    ("Hello world", False),
    ("The quick brown fox jumps over the lazy dog.", False),
    (" leading space", False),
    ("trailing space ", False),
    ("multiple   spaces    between     words", False),
    ("   ", False),
    ("tab\tseparated\tvalues\t\tand a trailing tab\t", False),
    ("line one\nline two\n\nline four\n", False),
    ("windows\r\nline\r\n\r\nendings\r\n", False),
    ("\n\n\n", False),
    ("  \n  \t \n\t\t  x", False),
    ("123456789", False),
    ("pi is 3.14159 and e is 2.71828", False),
    ("1,000,000 dollars and 42 cents", False),
    ("call +1 (555) 123-4567 before 2024-12-31 at 23:59", False),
    ("abc123def 4567890123 0.000001 1e-10 0x1F 007", False),
    ("It's John's book; they're sure we've won, I'm sure you'll see, he'd know. Don't!", False),
    ("IT'S JOHN'S BOOK; THEY'RE SURE WE'VE WON, I'M SURE YOU'LL SEE, HE'D KNOW. DON'T!", False),
    ("a'b 'quoted' \"double\" \u2018curly\u2019 \u201ccurly\u201d", False),
    ("Wait... what?!? (yes) [no] {maybe} <tag> -- ~~ ** ## @@ $$ %% ^^ && || ;; ::", False),
    ("!!!!!!!!!!!!????......,,,,;;;;", False),
    ("def add(a, b):\n    \"\"\"Adds two numbers.\"\"\"\n    return a + b\n\nprint(add(1, 2))\n", False),
    ("#include <vector>\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v.size() > 2 ? 0 : 1;\n}\n", False),
    ('{"name": "SlimInfer", "tokens": [1, 2, 3], "ok": true, "nested": {"x": null, "y": -0.5}}', False),
    ('<!DOCTYPE html>\n<html><body><p class="intro">Hello &amp; welcome</p></body></html>', False),
    ("camelCaseIdentifier snake_case_name SCREAMING_CASE kebab-case-name", False),
    ("https://github.com/huggingface/smollm?tab=readme-ov-file#usage and http://example.com/a/b_c-d.html", False),
    ("mail me at first.last+tag@example.co.uk", False),
    ("I love pizza \U0001F355\U0001F355! \U0001F600\U0001F602\U0001F916", False),
    ("family: \U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466 and flag \U0001F3F3\uFE0F\u200D\U0001F308", False),
    ("\U0001F44D\U0001F3FD \U0001F44B\U0001F3FF \U0001F9D1\U0001F3FB\u200D\U0001F4BB", False),
    ("\u4f60\u597d\uff0c\u4e16\u754c\uff01\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002", False),
    ("\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4.", False),
    ("\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645\u060c \u0643\u064a\u0641 \u062d\u0627\u0644\u0643\u061f", False),
    ("\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e, \u0906\u092a \u0915\u0948\u0938\u0947 \u0939\u0948\u0902?", False),
    ("\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u041a\u0430\u043a \u0434\u0435\u043b\u0430?", False),
    ("\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5", False),
    ("\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", False),
    ("\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01", False),
    ("Caf\u00e9 na\u00efve fa\u00e7ade S\u00e3o Paulo Z\u00fcrich \u00c5ngstr\u00f6m cr\u00e8me br\u00fbl\u00e9e", False),
    ("e\u0301 a\u0308 n\u0303 Z\u0335\u0327a\u0336l\u0337g\u0338o", False),
    ("100\u00a0km and\u00a0non-breaking\u00a0spaces", False),
    ("wide\u2003em space, thin\u2009space and\u3000ideographic\u3000space", False),
    ("\u00a0\u00a0leading nbsp", False),
    ("<|im_start|>user\nHi<|im_end|>", True),
    ("<|im_start|>user\nHi<|im_end|>", False),
    ("<|endoftext|>", True),
    ("<|endoftext|>", False),
    ("<|im_start|>", True),
    ("text<|im_end|>\n<|im_start|>assistant\n", True),
    ("<|im_start|>system\n" + CHATML_SYSTEM + "<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
     "<|im_start|>assistant\n", True),
    ("<|im_start|notquite|> <|unknown|>", True),
    ("", False),
    ("", True),
    (" ", False),
    ("Pneumonoultramicroscopicsilicovolcanoconiosis", False),
    ("supercalifragilisticexpialidocious" * 4, False),
    ("a" * 300, False),
    ("\u00e9" * 50 + "\U0001F600" * 10, False),
]

# Greedy prompts: (name, question or text, chat?).
GREEDY_CASES = [
    ("plain_france", "The capital of France is", False),
    ("plain_code", "def fibonacci(n):\n", False),
    ("chat_capital", "What is the capital of France?", True),
    ("chat_haiku", "Write a haiku about the ocean.", True),
]


def chatml(question):
    return (f"<|im_start|>system\n{CHATML_SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")


def jinja_chat(template_source, messages):
    """The GGUF chat template rendered as transformers renders it (jinja2, trim_blocks and
    lstrip_blocks, raise_exception available), with a generation prompt."""
    import jinja2
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template_source).render(messages=messages, add_generation_prompt=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def tokenize(llm, text, special=False):
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)


def cut(llm, text, n_tokens):
    """The longest prefix of `text` ending before a whitespace character (or at its end) that
    tokenizes to at most `n_tokens` tokens."""
    ends = [m.start() for m in re.finditer(r"\s", text) if m.start() > 0] + [len(text)]
    lo, hi = 0, len(ends) - 1
    while lo < hi:  # largest index whose prefix fits
        mid = (lo + hi + 1) // 2
        if len(tokenize(llm, text[: ends[mid]])) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[: ends[lo]]


def after(text, marker):
    i = text.find(marker)
    if i < 0:
        sys.exit(f"make-fixtures: marker {marker!r} not found")
    return text[i:]


def logits_prompts(llm):
    apache = read(os.path.join(LICENSES, "Apache-2.0"))
    gpl3 = read(os.path.join(LICENSES, "GPL-3"))
    mpl2 = read(os.path.join(LICENSES, "MPL-2.0"))
    argparse_doc = argparse_module.__doc__
    sources = [
        ("p16", 16, "Apache-2.0 notice", after(apache, "Unless required by applicable law")),
        ("p64", 64, "GPL-3 preamble", after(gpl3, "The GNU General Public License is a free")),
        ("p250", 250, f"Python {sys.version.split()[0]} argparse module docstring", argparse_doc.strip()),
        ("p500", 500, "MPL-2.0 from the start", mpl2),
        ("p1000", 1000, "GPL-3 terms and conditions", after(gpl3, "TERMS AND CONDITIONS")),
    ]
    out = []
    for name, n, source, text in sources:
        prompt = cut(llm, text, n)
        out.append((name, source, prompt))
    return out


def last_logits(llm):
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32).copy()


def run(llm, ids):
    llm.reset()
    llm.eval(ids)
    return last_logits(llm)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"make-fixtures: wrote {os.path.relpath(path, ROOT)}")


def main():
    ap = argparse_module.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/fixtures/llamacpp"))
    ap.add_argument("--jinja", action="store_true", help="chat prompts from the GGUF's own template via jinja2")
    ap.add_argument("--logit-cases", default="", help="comma-separated logits prompt names (default: all)")
    args = ap.parse_args()
    if not os.path.exists(args.model):
        sys.exit(f"make-fixtures: model {args.model} not found (run scripts/fetch-model.sh)")
    os.makedirs(args.out, exist_ok=True)
    generator = f"llama-cpp-python {llama_cpp.__version__}"
    model_sha = sha256(args.model)
    common = {"generator": generator, "model": os.path.basename(args.model), "model_sha256": model_sha}

    # ---- tokens ----
    vocab = Llama(args.model, vocab_only=True, verbose=False)
    cases = []
    for text, special in TOKEN_CASES:
        ids = vocab.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        cases.append({"text": text, "add_bos": False, "parse_special": special, "ids": ids})
    write_json(os.path.join(args.out, "tokens.json"), {**common, "cases": cases})

    # ---- logits ----
    llm = Llama(args.model, n_ctx=N_CTX, n_batch=N_BATCH, n_threads=N_THREADS,
                n_threads_batch=N_THREADS, logits_all=False, seed=SEED, verbose=False)
    n_vocab = llm.n_vocab()
    cases = []
    wanted = [c for c in args.logit_cases.split(",") if c]
    for name, source, text in logits_prompts(vocab):
        if wanted and name not in wanted:
            continue
        ids = tokenize(vocab, text)
        logits = run(llm, ids)
        assert logits.shape == (n_vocab,) and np.isfinite(logits).all(), name
        order = np.argsort(-logits, kind="stable")[:10]
        fname = f"logits_{name}.f32"
        logits.astype("<f4").tofile(os.path.join(args.out, fname))
        cases.append({"name": name, "source": source, "n_tokens": len(ids), "text": text,
                      "prompt_ids": ids, "argmax": int(order[0]),
                      "top10": [[int(i), float(logits[i])] for i in order],
                      "logits_file": fname})
        print(f"make-fixtures: {name}: {len(ids)} tokens, argmax {int(order[0])}")
    write_json(os.path.join(args.out, "logits.json"), {
        **common, "n_ctx": N_CTX, "n_batch": N_BATCH, "n_threads": N_THREADS, "n_vocab": n_vocab,
        "note": "logits of the last prompt position, float32 little-endian, n_vocab values per file",
        "cases": cases})

    # ---- greedy ----
    template = None
    if args.jinja:
        template = vocab.metadata.get("tokenizer.chat_template")
        if not template:
            sys.exit("make-fixtures: --jinja: the model has no tokenizer.chat_template")
    cases = []
    for name, prompt, chat in GREEDY_CASES:
        messages = [{"role": "user", "content": prompt}] if chat else None
        if chat and template is not None:
            text = jinja_chat(template, messages)
        else:
            text = chatml(prompt) if chat else prompt
        ids = tokenize(vocab, text, special=chat)
        logits = run(llm, ids)
        out = []
        for step in range(GREEDY_TOKENS):
            tok = int(np.argmax(logits))  # first maximum: ties to the lowest id
            out.append(tok)
            if step + 1 < GREEDY_TOKENS:
                llm.eval([tok])
                logits = last_logits(llm)
        cont = llm.detokenize(out).decode("utf-8", errors="replace")
        case = {"name": name, "chat": chat, "prompt_text": text, "prompt_ids": ids,
                "continuation": out, "text": cont}
        if chat and template is not None:
            case["messages"] = messages
            case["template"] = "the model's tokenizer.chat_template rendered by jinja2"
        cases.append(case)
        print(f"make-fixtures: {name}: {cont!r}")
    write_json(os.path.join(args.out, "greedy.json"), {
        **common, "n_ctx": N_CTX, "n_threads": N_THREADS, "tokens": GREEDY_TOKENS,
        "note": "argmax of the raw logits each step (no penalties); does not stop at end-of-generation ids",
        "cases": cases})


if __name__ == "__main__":
    main()
