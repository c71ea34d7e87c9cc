#!/usr/bin/env python3
"""Tables and a plot from `sliminfer-bench quality` summaries (one or more JSON files, as the
command prints them): accuracy per schedule and length, first-token agreement, mean TTFT, and
(where the summaries have it) the KV bytes per sequence at the longest length against dense and
the TTFT speedup over dense at the two longest lengths.

  python3 bench/quality/report.py bench/data/quality/smollm2-harness-17-schedules.json \
      --png bench/data/quality/accuracy-ttft-vs-length.png > table.md
"""
import argparse, collections, json, sys

LENGTHS_ORDER = None


def load(paths):
    acc = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
    ttft = collections.defaultdict(lambda: collections.defaultdict(list))
    agree = collections.defaultdict(lambda: collections.defaultdict(list))
    kv = collections.defaultdict(lambda: collections.defaultdict(list))
    sched_text = {}
    calls = []
    for p in paths:
        q = json.load(open(p))
        calls.extend(q["calls"] if "calls" in q else [q])  # a file may hold several calls' summaries
    for q in calls:
        for s in q["schedules"]:
            sched_text[s["name"]] = s["schedule"] or "(none)"
        for s in q["summary"]:
            a = acc[s["schedule"]][s["length"]]
            a[0] += s["correct"]; a[1] += s["total"]
            ttft[s["schedule"]][s["length"]].append(s["mean_ttft_ms"])
            if "mean_kv_bytes" in s:
                kv[s["schedule"]][s["length"]].append(s["mean_kv_bytes"])
        for a in q["agreement"]:
            agree[a["schedule"]][a["length"]].append((a["top1_agreement"], a["mean_kl"], a["docs"]))
    return acc, ttft, agree, sched_text, kv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("summaries", nargs="+")
    ap.add_argument("--png", default="")
    ap.add_argument("--plot", default="", help="comma-separated schedules to plot (default: the 8 most accurate)")
    ap.add_argument("--title", default="SmolLM2-135M", help="model name for the plot titles")
    a = ap.parse_args()
    acc, ttft, agree, sched_text, kv = load(a.summaries)
    lengths = sorted({L for s in acc.values() for L in s})
    def avg_acc(name):
        rows = [100.0 * acc[name][L][0] / acc[name][L][1] for L in lengths]
        return rows, sum(rows) / len(rows)
    order = sorted(acc, key=lambda n: (n != "dense", -avg_acc(n)[1]))
    dense_avg = avg_acc("dense")[1]
    have_kv = bool(kv) and len(lengths) >= 2
    Lmax = lengths[-1]
    mean = lambda xs: sum(xs) / len(xs)
    extra_head = (f" | KV vs dense {Lmax} | speedup {lengths[-2]} | speedup {Lmax}" if have_kv else "")
    print("| schedule | stages | " + " | ".join(f"acc {L}" for L in lengths) +
          " | average | vs dense | top-1 agree | mean KL | " + " | ".join(f"TTFT {L} ms" for L in lengths) +
          extra_head + " |")
    print("|---|---|" + "---|" * (2 * len(lengths) + 4 + (3 if have_kv else 0)))
    for n in order:
        rows, av = avg_acc(n)
        ag = [x for L in lengths for x in agree[n][L]]
        top1 = f"{100 * sum(x[0] * x[2] for x in ag) / sum(x[2] for x in ag):.0f}%" if ag else "-"
        kl = f"{sum(x[1] * x[2] for x in ag) / sum(x[2] for x in ag):.3f}" if ag else "-"
        tt = [sum(ttft[n][L]) / len(ttft[n][L]) for L in lengths]
        extra = ""
        if have_kv:
            kvr = mean(kv[n][Lmax]) / mean(kv["dense"][Lmax]) if kv[n][Lmax] else float("nan")
            sp = [mean(ttft["dense"][L]) / mean(ttft[n][L]) for L in lengths[-2:]]
            extra = f" | {100 * kvr:.0f}% | {sp[0]:.2f}x | {sp[1]:.2f}x"
        print(f"| {n} | `{sched_text.get(n, '')}` | " + " | ".join(f"{r:.1f}" for r in rows) +
              f" | {av:.1f} | {av - dense_avg:+.1f} | {top1} | {kl} | " + " | ".join(f"{t:.1f}" for t in tt) +
              extra + " |")
    if a.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        plot = [n for n in a.plot.split(",") if n in acc] if a.plot else order[:8]
        for n in plot:
            rows, _ = avg_acc(n)
            style = "k-o" if n == "dense" else "-o"
            ax1.plot(lengths, rows, style, label=n, linewidth=2.5 if n == "dense" else 1.2)
            ax2.plot(lengths, [sum(ttft[n][L]) / len(ttft[n][L]) for L in lengths], style, label=n,
                     linewidth=2.5 if n == "dense" else 1.2)
        ax1.set_xlabel("prompt tokens"); ax1.set_ylabel("exact-match accuracy (%)")
        ax1.set_title(f"Long-context tasks, {a.title} (40 cases per length)")
        ax2.set_xlabel("prompt tokens"); ax2.set_ylabel("mean TTFT (ms)")
        ax2.set_title("mean TTFT in the same run (H200, CUDA backend)")
        for ax in (ax1, ax2):
            ax.set_xscale("log", base=2); ax.set_xticks(lengths); ax.set_xticklabels([str(L) for L in lengths])
            ax.grid(alpha=0.3)
        ax1.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(a.png, dpi=110)
        print(f"\nplot: {a.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
