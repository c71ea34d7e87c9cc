#!/usr/bin/env python3
"""Renders the main panels of sliminfer.json to a PNG from a live Prometheus (query_range), the
picture in the README. Run by tests/deploy/prometheus_e2e.sh when SLIM_RENDER_PNG is set, e.g.
  SLIM_RENDER_PNG=deploy/grafana/panels.png SLIM_E2E_REQUESTS=48 SLIM_E2E_ROUNDS=3 \
    SLIM_E2E_CONCURRENCY=8 bash tests/deploy/prometheus_e2e.sh build
Needs matplotlib (not part of ctest).
"""
import argparse
import json
import math
import time
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MAIN = ["Time to first token", "Inter-token latency", "End-to-end latency", "Queue time",
        "Requests waiting / running", "Tokens per second", "KV blocks by tier and state", "KV bytes by tier"]


def query_range(prom, expr, start, end, step):
    qs = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prom}/api/v1/query_range?{qs}", timeout=20) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def legend(fmt, metric):
    out = fmt
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prom", required=True)
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--start", type=float, help="unix seconds (default: 3 minutes ago)")
    ap.add_argument("--window", default="10s", help="replaces $__rate_interval")
    args = ap.parse_args()
    end = time.time()
    start = args.start or end - 180
    with open(args.dashboard) as f:
        panels = {p["title"]: p for p in json.load(f)["panels"]}
    fig, axes = plt.subplots(4, 2, figsize=(13, 12))
    for ax, title in zip(axes.flat, MAIN):
        panel = panels[title]
        unit = panel["fieldConfig"]["defaults"]["unit"]
        scale, ylabel = (1e3, "ms") if unit == "s" else (1 / 2**20, "MiB") if unit == "bytes" else (1, "")
        for t in panel["targets"]:
            expr = t["expr"].replace("$__rate_interval", args.window).replace("$job", ".+")
            for series in query_range(args.prom, expr, start, end, 1):
                pts = [(float(ts) - start, float(v) * scale) for ts, v in series["values"] if math.isfinite(float(v))]
                if pts:
                    ax.plot(*zip(*pts), label=legend(t["legendFormat"], series["metric"]), lw=1.2)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("s", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("SlimInfer-serve dashboard, main panels (Prometheus data of tests/deploy/prometheus_e2e.sh: "
                 "SmolLM2-135M Q4_1, CPU)", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
