#!/usr/bin/env python3
"""Writes deploy/grafana/sliminfer.json, the SlimInfer-serve Grafana dashboard (edit panels here).

Every query uses metrics the server exports (server/metrics.cpp), including the KV store's tiers,
transfers, prefetches, decode KV selections and preemptions. tests/deploy/prometheus_e2e.sh evaluates every query
against a real Prometheus scraping a real server that swaps sequences between tiers.
"""
import json
import os

SEL = '{job=~"$job"}'
RI = "$__rate_interval"


def quantiles(metric, qs=(0.5, 0.9, 0.99)):
    return [(f"p{int(q * 100)}",
             f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{SEL}[{RI}])))") for q in qs]


# (title, unit, description, [(legend, expr)], width)
PANELS = [
    ("Time to first token", "s", "Arrival of a Generate call to its first token (queue + prefill), all replicas.",
     quantiles("sliminfer_time_to_first_token_seconds"), 12),
    ("Inter-token latency", "s", "Time between consecutive streamed tokens of a request.",
     quantiles("sliminfer_inter_token_latency_seconds"), 12),
    ("End-to-end latency", "s", "Arrival of a Generate call to its end, any outcome.",
     quantiles("sliminfer_e2e_request_latency_seconds"), 12),
    ("Queue time", "s", "Arrival to admission (prefill start): time spent waiting for a sequence slot / KV blocks.",
     quantiles("sliminfer_request_queue_time_seconds"), 12),
    ("Requests waiting / running", "short", "Requests queued for admission and sequences prefilling or decoding (sum over replicas).",
     [("waiting", f"sum(sliminfer_num_requests_waiting{SEL})"),
      ("running", f"sum(sliminfer_num_requests_running{SEL})")], 12),
    ("Requests by outcome", "reqps", "Finished Generate calls per second by outcome (ok or the lower-case gRPC status).",
     [("{{outcome}}", f"sum by (outcome) (rate(sliminfer_requests_total{SEL}[{RI}]))")], 12),
    ("Tokens per second", "short", "Prompt tokens prefilled and tokens generated per second.",
     [("prompt", f"sum(rate(sliminfer_prompt_tokens_total{SEL}[{RI}]))"),
      ("generated", f"sum(rate(sliminfer_generation_tokens_total{SEL}[{RI}]))")], 12),
    ("Pruned prompt-token share", "percentunit", "Prompt tokens dropped by SlimInfer pruning / prompt tokens prefilled.",
     [("pruned share", f"sum(rate(sliminfer_pruned_prompt_tokens_total{SEL}[{RI}])) / "
                       f"sum(rate(sliminfer_prompt_tokens_total{SEL}[{RI}]))")], 12),
    ("Prefill time and decode step", "s", "Prompt forward pass per request, and one batched decode step.",
     [("prefill p50", f"histogram_quantile(0.5, sum by (le) (rate(sliminfer_prefill_time_seconds_bucket{SEL}[{RI}])))"),
      ("prefill p99", f"histogram_quantile(0.99, sum by (le) (rate(sliminfer_prefill_time_seconds_bucket{SEL}[{RI}])))"),
      ("decode step p50", f"histogram_quantile(0.5, sum by (le) (rate(sliminfer_decode_step_seconds_bucket{SEL}[{RI}])))"),
      ("decode step p99", f"histogram_quantile(0.99, sum by (le) (rate(sliminfer_decode_step_seconds_bucket{SEL}[{RI}])))")], 12),
    ("Decode batch size", "short", "Mean sequences per batched decode step.",
     [("mean batch", f"sum(rate(sliminfer_decode_batch_size_sum{SEL}[{RI}])) / "
                     f"sum(rate(sliminfer_decode_batch_size_count{SEL}[{RI}]))")], 12),
    ("KV blocks by tier and state", "short", "Paged KV cache blocks, used and free, per tier (host or gpu).",
     [("{{tier}} {{state}}", f"sum by (tier, state) (sliminfer_kv_blocks{SEL})"),
      ("committed (admission budget)", f"sum(sliminfer_kv_blocks_committed{SEL})")], 12),
    ("KV bytes by tier", "bytes", "Bytes of KV blocks in use and the tier's capacity (gpu, host).",
     [("{{tier}} in use", f"sum by (tier) (sliminfer_kv_bytes{SEL})"),
      ("{{tier}} capacity", f"sum by (tier) (sliminfer_kv_capacity_bytes{SEL})")], 12),
    ("KV usage by tier", "percentunit", "Share of each tier's blocks in use (max over replicas).",
     [("{{tier}}", f"max by (tier) (sliminfer_kv_usage_ratio{SEL})")], 12),
    ("KV transfers", "Bps", "Bytes per second copied between the tiers, and the copy engine's rate while busy "
     "(bytes / copy-stream seconds), by direction.",
     [("{{direction}}", f"sum by (direction) (rate(sliminfer_kv_transfer_bytes_total{SEL}[{RI}]))"),
      ("{{direction}} while copying", f"sum by (direction) (increase(sliminfer_kv_transfer_bytes_total{SEL}[{RI}])) / "
                                      f"sum by (direction) (increase(sliminfer_kv_transfer_seconds_total{SEL}[{RI}]))")], 12),
    ("KV transfer batch size", "bytes", "Bytes per batched copy between tiers.",
     quantiles("sliminfer_kv_transfer_batch_bytes", (0.5, 0.99)), 12),
    ("Preemptions, prefetches, evictions", "ops", "Sequences swapped out to the host tier, prefetches by result, and "
     "gpu-tier blocks released by offloads, per second.",
     [("preemptions", f"sum(rate(sliminfer_num_preemptions_total{SEL}[{RI}]))"),
      ("prefetch {{result}}", f"sum by (result) (rate(sliminfer_kv_prefetch_total{SEL}[{RI}]))"),
      ("evicted blocks", f"sum(rate(sliminfer_kv_evictions_total{SEL}[{RI}]))")], 12),
    ("Prefetch wait", "s", "Per prefetch (a swap-in, or the blocks a decode KV selection brought in): how long "
     "compute stood still waiting for it to land, timed on the device on CUDA (0 when it was there first).",
     quantiles("sliminfer_kv_prefetch_wait_seconds", (0.5, 0.99)), 12),
    ("Decode KV selection", "percentunit", "With a decode KV budget: overlap of each step's chosen blocks with the "
     "set on the gpu tier (p10, p50), and the share of selections the gamma rule kept without moving a block.",
     [("overlap p10", f"histogram_quantile(0.1, sum by (le) (rate(sliminfer_kv_selection_overlap_ratio_bucket{SEL}[{RI}])))"),
      ("overlap p50", f"histogram_quantile(0.5, sum by (le) (rate(sliminfer_kv_selection_overlap_ratio_bucket{SEL}[{RI}])))"),
      ("kept by gamma", f"sum(rate(sliminfer_kv_prefetch_total{{job=~\"$job\",result=\"skipped_gamma\"}}[{RI}])) / "
                        f"sum(rate(sliminfer_kv_selection_overlap_ratio_count{SEL}[{RI}]))")], 12),
]


def main():
    panels = []
    for i, (title, unit, desc, targets, width) in enumerate(PANELS):
        panels.append({
            "id": i + 1, "type": "timeseries", "title": title, "description": desc,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": width, "x": (i % 2) * 12, "y": (i // 2) * 8},
            "fieldConfig": {"defaults": {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10}},
                            "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                        "tooltip": {"mode": "multi"}},
            "targets": [{"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend,
                         "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                        for j, (legend, expr) in enumerate(targets)],
        })
    dash = {
        "title": "SlimInfer-serve",
        "uid": "sliminfer-serve",
        "description": ("TTFT, latency, load, tokens, pruning, and the KV store's tiers, transfers, "
                        "prefetches and preemptions of SlimInfer-serve."),
        "tags": ["sliminfer", "llm", "inference"],
        "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": True,
        "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            {"name": "job", "label": "Job", "type": "query",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(sliminfer_num_requests_running, job)", "refId": "job"},
             "definition": "label_values(sliminfer_num_requests_running, job)",
             "includeAll": True, "multi": True, "allValue": ".+", "current": {}, "refresh": 2, "sort": 1},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sliminfer.json")
    with open(out, "w") as f:
        json.dump(dash, f, indent=2)
        f.write("\n")
    print(f"wrote {out}: {len(panels)} panels")


if __name__ == "__main__":
    main()
