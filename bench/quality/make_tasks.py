#!/usr/bin/env python3
"""Long-context quality tasks for SlimInfer pruning schedules (issue 3), built from real English
text shipped on every Debian/Ubuntu machine: the license texts in /usr/share/common-licenses and
the docstrings of Python's standard library. No repeated filler: each case draws its own
sequence of paragraphs.

Tasks (exact match on the number the model answers):
  passkey   a 5-digit pass key hidden in the text;
  needle    one fact ("The secret code of the blue door is 4821.") and a question about it;
  multikey  four facts of the same form with different keys, spread over the text; one is asked;
  vartrack  a chain of three assignments (VAR A = 12345 ... VAR B = VAR A ... VAR C = VAR B);
            the value of the last variable is asked.
Needle depths are spread over [0.05, 0.95]. Lengths are in tokens of the model's tokenizer
(counted with --tokenizer-cmd, by default our own `sliminfer-bench tokenize`), within 3%.

Writes JSON lines: {"id", "task", "length", "depth", "messages": [{"role", "content"}],
"answer"} and, with --docs, plain documents for the agreement metrics:
{"id", "length", "messages": [...]}.

  python3 bench/quality/make_tasks.py --lengths 1024,2048,4096,7168 --per-length 40 \
      --out bench/quality/tasks.jsonl --docs-out bench/quality/docs.jsonl
"""
import argparse, glob, inspect, json, os, pkgutil, random, re, subprocess, sys, importlib

LICENSES = ["GPL-3", "GPL-2", "LGPL-2.1", "LGPL-3", "Apache-2.0", "MPL-2.0", "MPL-1.1", "GFDL-1.3",
            "Artistic", "BSD", "CC0-1.0"]
STDLIB = ["argparse", "asyncio", "base64", "bisect", "calendar", "collections", "concurrent.futures",
          "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib",
          "email", "email.message", "enum", "fractions", "functools", "gettext", "glob", "gzip", "hashlib",
          "heapq", "hmac", "html", "http.client", "http.server", "imaplib", "inspect", "io", "ipaddress",
          "itertools", "json", "locale", "logging", "mailbox", "math", "multiprocessing", "numbers",
          "operator", "optparse", "os", "pathlib", "pickle", "pprint", "queue", "random", "re", "sched",
          "secrets", "select", "selectors", "shelve", "shlex", "shutil", "signal", "smtplib", "socket",
          "sqlite3", "ssl", "statistics", "string", "struct", "subprocess", "tarfile", "tempfile",
          "textwrap", "threading", "time", "timeit", "tokenize", "trace", "traceback", "turtle", "typing",
          "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "weakref", "xml.dom",
          "zipfile", "zlib"]


def paragraphs():
    """Prose paragraphs (>= 200 characters, mostly letters) from the two sources."""
    out = []
    for name in LICENSES:
        path = os.path.join("/usr/share/common-licenses", name)
        if os.path.exists(path):
            text = open(path, encoding="utf-8", errors="replace").read()
            out += [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    for modname in STDLIB:
        try:
            mod = importlib.import_module(modname)
        except Exception:
            continue
        docs = [inspect.getdoc(mod) or ""]
        for _, obj in inspect.getmembers(mod):
            if inspect.isclass(obj) or inspect.isfunction(obj):
                if getattr(obj, "__module__", "") == mod.__name__:
                    docs.append(inspect.getdoc(obj) or "")
        for d in docs:
            out += [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", d)]
    good = []
    seen = set()
    for p in out:
        letters = sum(c.isalpha() for c in p)
        if len(p) >= 200 and letters / max(1, len(p)) > 0.7 and p not in seen and ">>>" not in p:
            seen.add(p)
            good.append(p)
    return good


class Counter:
    """Token counts through our own tokenizer (`sliminfer-bench tokenize`)."""

    def __init__(self, bench, model):
        self.bench, self.model = bench, model

    def count(self, texts, chat=False):
        cmd = [self.bench, "tokenize", "--model", self.model, "--lines"] + (["--chat"] if chat else [])
        r = subprocess.run(cmd, input="".join(json.dumps(t) + "\n" for t in texts),
                           capture_output=True, text=True, check=True)
        return [json.loads(l)["n_tokens"] for l in r.stdout.splitlines()]


COLORS = ["blue", "red", "green", "yellow", "white", "black", "silver", "golden", "purple", "orange"]
THINGS = ["door", "box", "car", "lamp", "gate", "book", "ship", "clock", "chair", "bridge"]


def build_case(rng, task, paras, para_tokens, target, depth, overhead):
    """Fills ~target tokens with paragraphs and inserts the needles."""
    if task == "passkey":
        key = rng.randint(10000, 99999)
        needles = [f"The pass key is {key}. Remember it. {key} is the pass key."]
        question = "What is the pass key? Answer with the number only."
        intro = "There is a pass key hidden inside a lot of irrelevant text. Find it and memorize it."
        answer = str(key)
        depths = [depth]
    elif task == "needle":
        c, t = rng.choice(COLORS), rng.choice(THINGS)
        code = rng.randint(1000, 9999)
        needles = [f"The secret code of the {c} {t} is {code}."]
        question = f"What is the secret code of the {c} {t}? Answer with the number only."
        intro = "Read the following text carefully; one sentence in it states a secret code."
        answer = str(code)
        depths = [depth]
    elif task == "multikey":
        keys = rng.sample([(c, t) for c in COLORS for t in THINGS], 4)
        codes = rng.sample(range(1000, 9999), 4)
        needles = [f"The secret code of the {c} {t} is {n}." for (c, t), n in zip(keys, codes)]
        ask = rng.randrange(4)
        question = (f"What is the secret code of the {keys[ask][0]} {keys[ask][1]}? "
                    "Answer with the number only.")
        intro = "Read the following text carefully; several sentences in it state secret codes."
        answer = str(codes[ask])
        # The asked needle at `depth`, the others spread around it.
        others = [d for d in (0.1, 0.35, 0.6, 0.85)]
        rng.shuffle(others)
        depths = []
        j = 0
        for i in range(4):
            if i == ask:
                depths.append(depth)
            else:
                depths.append(others[j]); j += 1
    elif task == "vartrack":
        names = rng.sample(["ALPHA", "BRAVO", "DELTA", "ECHO", "KILO", "LIMA", "OSCAR", "TANGO", "ZULU"], 3)
        value = rng.randint(10000, 99999)
        needles = [f"VAR {names[0]} = {value}.", f"VAR {names[1]} = VAR {names[0]}.",
                   f"VAR {names[2]} = VAR {names[1]}."]
        question = f"What is the value of VAR {names[2]}? Answer with the number only."
        intro = "Memorize the variable assignments hidden in the following text."
        answer = str(value)
        d0 = max(0.05, min(depth, 0.8))
        depths = [d0, min(0.95, d0 + 0.05), min(0.95, d0 + 0.1)]
    else:
        raise ValueError(task)
    budget = target - overhead
    order = list(range(len(paras)))
    rng.shuffle(order)
    body, used = [], 0
    for i in order:
        if used + para_tokens[i] > budget:
            continue
        body.append(paras[i]); used += para_tokens[i]
        if used > budget * 0.985:
            break
    # Insert needles at their depths (by paragraph index), deepest first so indices hold.
    for needle, d in sorted(zip(needles, depths), key=lambda x: -x[1]):
        body.insert(int(round(d * len(body))), needle)
    content = intro + "\n\n" + "\n\n".join(body) + "\n\n" + question
    return {"messages": [{"role": "user", "content": content}], "answer": answer, "depths": depths}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="1024,2048,4096,7168")
    ap.add_argument("--per-length", type=int, default=40)
    ap.add_argument("--tasks", default="passkey,needle,multikey,vartrack")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--bench", default="build/bin/sliminfer-bench")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", default="bench/quality/tasks.jsonl")
    ap.add_argument("--docs-out", default="")
    ap.add_argument("--docs-per-length", type=int, default=20)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    paras = paragraphs()
    counter = Counter(a.bench, a.model)
    # One tokenizer call per paragraph is slow: estimate paragraph sizes from characters with a
    # ratio calibrated on a sample, then correct each case with a real count below.
    sample = paras[:: max(1, len(paras) // 40)][:40]
    real = counter.count(sample)
    ratio = sum(real) / sum(len(p) for p in sample)
    para_tokens = [max(1, int(len(p) * ratio)) + 1 for p in paras]
    print(f"{len(paras)} paragraphs, ~{sum(para_tokens)} tokens (chars/token {1 / ratio:.2f})", file=sys.stderr)
    tasks = a.tasks.split(",")
    lengths = [int(x) for x in a.lengths.split(",")]
    with open(a.out, "w") as f:
        n = 0
        for L in lengths:
            for i in range(a.per_length):
                task = tasks[i % len(tasks)]
                depth = 0.05 + 0.9 * ((i // len(tasks)) % 10) / 9.0
                case = build_case(rng, task, paras, para_tokens, L, depth, 60)
                # Correct the length with a real count: drop paragraphs until within 3% of L.
                content = case["messages"][0]["content"]
                real_n = counter.count([content], chat=True)[0]
                best, best_n = case, real_n
                target, tries = L, 0
                while abs(best_n - L) > L * 0.03 and tries < 30:
                    target = max(200, int(target * L / real_n))
                    case = build_case(rng, task, paras, para_tokens, target, depth, 60)
                    real_n = counter.count([case["messages"][0]["content"]], chat=True)[0]
                    if abs(real_n - L) < abs(best_n - L):
                        best, best_n = case, real_n
                    tries += 1
                case, real_n = best, best_n
                row = {"id": f"{task}-{L}-{i}", "task": task, "length": L, "depth": round(depth, 3),
                       "prompt_tokens_approx": real_n, "messages": case["messages"], "answer": case["answer"]}
                f.write(json.dumps(row) + "\n")
                n += 1
        print(f"wrote {n} cases to {a.out}", file=sys.stderr)
    if a.docs_out:
        with open(a.docs_out, "w") as f:
            for L in lengths:
                for i in range(a.docs_per_length):
                    order = list(range(len(paras)))
                    rng.shuffle(order)
                    body, used = [], 0
                    for j in order:
                        if used + para_tokens[j] > L - 60:
                            continue
                        body.append(paras[j]); used += para_tokens[j]
                        if used > (L - 60) * 0.985:
                            break
                    content = "\n\n".join(body) + "\n\nSummarize the text above in one sentence."
                    f.write(json.dumps({"id": f"doc-{L}-{i}", "length": L,
                                        "messages": [{"role": "user", "content": content}]}) + "\n")
        print(f"wrote documents to {a.docs_out}", file=sys.stderr)


if __name__ == "__main__":
    main()
