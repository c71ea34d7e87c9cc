#!/usr/bin/env bash
# Integration test: the real sliminfer-server (default model, CPU) scraped every second by a real
# Prometheus loading deploy/prometheus/sliminfer-rules.yml, loaded by sliminfer-bench server; then
# every dashboard and rule expression must return data (tests/deploy/check_queries.py).
# Usage: prometheus_e2e.sh BUILD_DIR. Loopback only, free ports, everything killed on exit.
# Env: SLIM_E2E_REQUESTS (8), SLIM_E2E_ROUNDS (1 bench run), SLIM_E2E_CONCURRENCY (4),
# SLIM_E2E_PAUSE_S (0, idle seconds between rounds); SLIM_RENDER_PNG=path.png renders the README
# picture (deploy/grafana/render_panels.py, needs matplotlib) from this run's data before shutting down.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(cd "${1:?usage: prometheus_e2e.sh BUILD_DIR}" && pwd)"
MODEL="${SLIM_E2E_MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
PROMETHEUS="${PROMETHEUS:-$(command -v prometheus || true)}"
REQUESTS="${SLIM_E2E_REQUESTS:-8}"
ROUNDS="${SLIM_E2E_ROUNDS:-1}"
CONCURRENCY="${SLIM_E2E_CONCURRENCY:-4}"

for f in "$BUILD/bin/sliminfer-server" "$BUILD/bin/sliminfer-bench" "$BUILD/bin/sliminfer-cli" "$MODEL"; do
  [ -e "$f" ] || { echo "prometheus_e2e: missing $f" >&2; exit 1; }
done
[ -n "$PROMETHEUS" ] || { echo "prometheus_e2e: prometheus not installed (scripts/setup.sh installs it)" >&2; exit 1; }

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM  # so a ctest timeout still runs cleanup

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GRPC_PORT=$(free_port); HTTP_PORT=$(free_port); PROM_PORT=$(free_port)
echo "prometheus_e2e: grpc $GRPC_PORT http (/metrics) $HTTP_PORT prometheus $PROM_PORT"

"$BUILD/bin/sliminfer-server" --model "$MODEL" --device cpu --port "$GRPC_PORT" \
  --http-host 127.0.0.1 --http-port "$HTTP_PORT" --max-seqs 4 --max-queue 64 --pruning default \
  --kv-tokens 1600 --host-kv-tokens 16384 >"$TMP/server.log" 2>&1 &
PIDS+=($!)

cp "$ROOT/deploy/prometheus/sliminfer-rules.yml" "$TMP/"
sed -e 's/^\(  *interval:\).*/\1 1s/' -i "$TMP/sliminfer-rules.yml"  # recording rules every second
cat >"$TMP/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [sliminfer-rules.yml]
scrape_configs:
  - job_name: sliminfer
    static_configs:
      - targets: ["127.0.0.1:$HTTP_PORT"]
YAML
"$PROMETHEUS" --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
PROM="http://127.0.0.1:$PROM_PORT"

fail() { echo "prometheus_e2e: $*" >&2; tail -20 "$TMP/server.log" >&2; tail -20 "$TMP/prometheus.log" >&2; exit 1; }

"$BUILD/bin/sliminfer-cli" --server "127.0.0.1:$GRPC_PORT" health --wait 60 >/dev/null || fail "server not SERVING"
# up{job="sliminfer"} == 1 within 30 s (python: no curl dependency)
python3 - "$PROM" <<'PY' || fail "Prometheus never scraped the server"
import json, sys, time, urllib.request
url = sys.argv[1] + "/api/v1/query?query=up%7Bjob%3D%22sliminfer%22%7D"
for _ in range(60):
    try:
        res = json.load(urllib.request.urlopen(url, timeout=2))["data"]["result"]
        if res and res[0]["value"][1] == "1":
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(1)
PY

LOAD_START=$(date +%s)
for round in $(seq "$ROUNDS"); do
  timeout 90 "$BUILD/bin/sliminfer-bench" server --server "127.0.0.1:$GRPC_PORT" --concurrency "$CONCURRENCY" \
    --requests "$REQUESTS" --prompt-tokens 64 --max-tokens 8 --pruning default --warmup 0 --json >"$TMP/bench.json" \
    2>"$TMP/bench.err" || { cat "$TMP/bench.err" >&2; fail "bench round $round failed"; }
  [ "$round" = "$ROUNDS" ] || sleep "${SLIM_E2E_PAUSE_S:-0}"
done
echo "prometheus_e2e: bench: $(head -c 400 "$TMP/bench.json")"
# Two 256-token prompts: long enough for the default schedule (28:128) to drop tokens, so the
# pruned-share panel shows a non-zero value.
timeout 90 "$BUILD/bin/sliminfer-bench" server --server "127.0.0.1:$GRPC_PORT" --concurrency 2 --requests 2 \
  --prompt-tokens 256 --max-tokens 4 --pruning default --warmup 0 --json >"$TMP/bench-pruned.json" \
  2>"$TMP/bench.err" || { cat "$TMP/bench.err" >&2; fail "pruned bench failed"; }

# Three 1,200-token prompts over a gpu tier of 1,600 tokens per layer: later ones swap earlier
# ones out to the host tier and back, so the transfer, prefetch and preemption panels have data.
timeout 120 "$BUILD/bin/sliminfer-bench" server --server "127.0.0.1:$GRPC_PORT" --concurrency 3 --requests 3 \
  --prompt-tokens 1200 --max-tokens 8 --pruning off --warmup 0 --json >"$TMP/bench-swap.json" \
  2>"$TMP/bench.err" || { cat "$TMP/bench.err" >&2; fail "swap bench failed"; }

# Two 600-token prompts decoding under a 128-token KV budget per request: the prompt is written
# through to the host tier and the gpu tier keeps the chosen blocks (the selection panel's data).
timeout 120 "$BUILD/bin/sliminfer-bench" server --server "127.0.0.1:$GRPC_PORT" --concurrency 1 --requests 2 \
  --prompt-tokens 600 --max-tokens 16 --pruning off --decode-kv-budget 128 --warmup 0 --json >"$TMP/bench-budget.json" \
  2>"$TMP/bench.err" || { cat "$TMP/bench.err" >&2; fail "decode budget bench failed"; }

sleep 3  # two more scrapes and rule evaluations after the last request
python3 "$ROOT/tests/deploy/check_queries.py" --prom "$PROM" \
  --dashboard "${SLIM_E2E_DASHBOARD:-$ROOT/deploy/grafana/sliminfer.json}" --rules "$ROOT/deploy/prometheus/sliminfer-rules.yml" \
  --window 60s || fail "queries without data"

if [ -n "${SLIM_RENDER_PNG:-}" ]; then
  python3 "$ROOT/deploy/grafana/render_panels.py" --prom "$PROM" --dashboard "$ROOT/deploy/grafana/sliminfer.json" \
    --out "$SLIM_RENDER_PNG" --start "$((LOAD_START - 5))"
fi
echo "prometheus_e2e: ok"
