#!/usr/bin/env python3
"""Plots bench/serving.md's prefill-budget runs: the 1K-token streams' inter-token latency
(p50, p99, max) and the 32K prompts' TTFT (p50) against --max-prefill-tokens-per-step, from the
open-loop run's JSON (bench/serving_gpu.sh ... B:poisson ...), given as a file and the key of
the call in it.

  python3 bench/plot_serving.py bench/data/serving/h200-8b-serving-device-calls.json \
      call3_budgets_poisson_4rps_1k_32k_mix bench/serving-chunked.png
"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

runs = json.load(open(sys.argv[1]))[sys.argv[2]]
rows = []
for name, r in runs.items():
    budget = int(name.split("-")[0][1:])
    short, long_ = r["by_prompt_tokens"]["1024"], r["by_prompt_tokens"]["32768"]
    rows.append((budget, short["itl_ms"], long_["ttft_ms"]))
rows.sort(key=lambda x: x[0] if x[0] > 0 else 1 << 30)  # unchunked (0) last, as "no limit"
labels = [str(b) if b > 0 else "no limit" for b, _, _ in rows]
x = range(len(rows))
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
for key, style in (("p50", "o-"), ("p99", "s-"), ("max", "^--")):
    a.plot(x, [itl[key] for _, itl, _ in rows], style, label=f"1K streams' ITL {key}")
a.set_yscale("log")
a.set_ylabel("ms")
a.set_xticks(list(x), labels)
a.set_xlabel("--max-prefill-tokens-per-step")
a.legend()
a.set_title("Inter-token latency while 32K prompts arrive")
b.plot(x, [t["p50"] for _, _, t in rows], "o-", label="32K TTFT p50")
b.plot(x, [t["p99"] for _, _, t in rows], "s-", label="32K TTFT p99")
b.set_ylabel("ms")
b.set_xticks(list(x), labels)
b.set_xlabel("--max-prefill-tokens-per-step")
b.legend()
b.set_title("Long prompts' time to first token")
fig.suptitle("H200, LLaMA-3.1-8B shape, Poisson 4 req/s, 7:1 mix of 1K and 32K prompts")
fig.tight_layout()
fig.savefig(sys.argv[3], dpi=110)
