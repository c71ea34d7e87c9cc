#!/usr/bin/env bash
# Our CPU engine against llama.cpp (bench/llamacpp_peer.py) on the same GGUF, machine and token
# ids, one after the other: prints one JSON object with both result lists.
#   bench/cpu_compare.sh [LENGTHS] [DECODE_TOKENS] [REPEAT]      (defaults 512,2048,8192 32 3)
# SLIM_KV_DTYPE=f16 runs our engine with an f16 KV cache (llama.cpp's default); default f32.
# Needs scripts/setup.sh --peers (llama-cpp-python) and a built sliminfer-bench.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LENGTHS="${1:-512,2048,8192}"
DECODE="${2:-32}"
REPEAT="${3:-3}"
MODEL="${SLIM_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
BENCH="${SLIM_BENCH:-build/bin/sliminfer-bench}"
KV_DTYPE="${SLIM_KV_DTYPE:-f32}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# 8192 + decode tokens runs past the trained 8K context in both engines (llama.cpp warns).
CONTEXT=$(( $(echo "$LENGTHS" | tr ',' '\n' | sort -n | tail -1) + DECODE + 1 ))
python3 bench/llamacpp_peer.py --model "$MODEL" --lengths "$LENGTHS" --dump-prompts "$TMP" --dump-only >&2
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$BENCH" engine --model "$MODEL" --device cpu --lengths "$LENGTHS" --modes dense,pruned \
  --decode-tokens "$DECODE" --repeat "$REPEAT" --prompt-ids-dir "$TMP" --context "$CONTEXT" --kv-dtype "$KV_DTYPE" \
  --json > "$TMP/ours.json"
echo "load between: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 bench/llamacpp_peer.py --model "$MODEL" --lengths "$LENGTHS" --decode-tokens "$DECODE" \
  --repeat "$REPEAT" --prompt-ids-file "$TMP" > "$TMP/peer.json"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$TMP/ours.json" "$TMP/peer.json" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1])); peer = json.load(open(sys.argv[2]))
print(json.dumps({"ours": ours, "llama.cpp": peer}))
print("| prompt tokens | ours dense TTFT ms | ours pruned TTFT ms | llama.cpp TTFT ms | ours decode ms/tok | llama.cpp decode ms/tok |", file=sys.stderr)
print("|---|---|---|---|---|---|", file=sys.stderr)
for p in peer["results"]:
    L = p["prompt_tokens"]
    d = next(r for r in ours["results"] if r["prompt_tokens"] == L and r["mode"] == "dense")
    q = next((r for r in ours["results"] if r["prompt_tokens"] == L and r["mode"] == "pruned"), None)
    print(f"| {L} | {d['ttft_ms']:.0f} | {q['ttft_ms'] if q else float('nan'):.0f} | {p['ttft_ms']:.0f} | "
          f"{d['decode_ms_per_token']:.2f} | {p['decode_ms_per_token']:.2f} |", file=sys.stderr)
PY
