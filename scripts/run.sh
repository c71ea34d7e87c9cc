#!/usr/bin/env bash
# Quick start: installs what is missing, builds, fetches the default model, starts
# sliminfer-server on the best device present, waits for it to report SERVING, streams a
# long-context demo through sliminfer-cli with pruning off and then on, prints both TTFTs, and
# keeps serving until Ctrl-C (printing how to connect).
#
# Environment: SLIM_BUILD_DIR (build), SLIM_PORT (50051), SLIM_HTTP_PORT (8000: OpenAI API, /metrics),
# SLIM_DEVICE (cpu / cuda / auto; default: auto when nvidia-smi sees a GPU, else cpu),
# SLIM_CMAKE_ARGS (extra cmake arguments), SLIM_DEMO_FILE (the long document; default GPL-3).
# An argument replaces the demo question.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${SLIM_BUILD_DIR:-build}"
PORT="${SLIM_PORT:-50051}"
HTTP_PORT="${SLIM_HTTP_PORT:-8000}"
MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION="${1:-In two sentences: what must you do when you distribute a modified version of a program under this license?}"

bash scripts/setup.sh
bash scripts/fetch-model.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${SLIM_CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "$(nproc)" --target sliminfer-server sliminfer-cli sliminfer-bench

DEVICE="${SLIM_DEVICE:-}"
if [ -z "$DEVICE" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
    DEVICE=auto   # CUDA when this build has it and it initialises, else the CPU
  else
    DEVICE=cpu
  fi
fi

SERVER_LOG="$BUILD_DIR/sliminfer-server.log"
echo
echo "== starting sliminfer-server (device $DEVICE, port $PORT, http $HTTP_PORT; log $SERVER_LOG) =="
"$BUILD_DIR/bin/sliminfer-server" --model "$MODEL" --device "$DEVICE" --port "$PORT" \
  --http-port "$HTTP_PORT" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
stop_server() {
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo
    echo "== stopping the server (SIGTERM: in-flight streams finish first) =="
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

CLI=("$BUILD_DIR/bin/sliminfer-cli" --server "localhost:$PORT")
if ! "${CLI[@]}" health --wait 300 >/dev/null; then
  echo "the server did not become ready; its log:" >&2
  tail -n 30 "$SERVER_LOG" >&2
  exit 1
fi
echo "SERVING: $("${CLI[@]}" info | grep -E '"(description)"' | sed 's/^ *//')"

# The long document: the first ~18 KB of a license text (about 4,000 tokens).
DOC_FILE="${SLIM_DEMO_FILE:-/usr/share/common-licenses/GPL-3}"
PROMPT_FILE="$(mktemp)"
{ head -c 18000 "$DOC_FILE"; printf '\n\n%s\n' "$QUESTION"; } >"$PROMPT_FILE"

demo() {  # $1 = off|default; streams the answer, prints the client's summary line, sets TTFT
  local summary
  echo
  echo "== long-context demo, pruning $1 =="
  echo "user: <$(wc -c <"$PROMPT_FILE") bytes of $(basename "$DOC_FILE")> $QUESTION"
  echo -n "assistant: "
  summary="$("${CLI[@]}" generate --prompt-file "$PROMPT_FILE" --chat --max-tokens 96 --pruning "$1" 2>&1 >&3)" ||
    { echo "$summary" >&2; exit 1; }
  echo "$summary"
  TTFT="$(sed -n 's/.*TTFT \([0-9.]*\) ms.*/\1/p' <<<"$summary")"
}
exec 3>&1   # the answer streams to stdout; the summary line (stderr) is captured
demo off
TTFT_DENSE="$TTFT"
demo default
TTFT_PRUNED="$TTFT"
rm -f "$PROMPT_FILE"

echo
echo "== TTFT through gRPC: dense ${TTFT_DENSE} ms, SlimInfer-pruned ${TTFT_PRUNED} ms" \
  "($(awk -v a="$TTFT_DENSE" -v b="$TTFT_PRUNED" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }')) =="
cat <<EOF

sliminfer-server keeps serving on localhost:$PORT (Ctrl-C stops it). Try:
  $BUILD_DIR/bin/sliminfer-cli --server localhost:$PORT generate --prompt "Why is the sky blue?" --chat --max-tokens 64
  $BUILD_DIR/bin/sliminfer-cli --server localhost:$PORT generate --prompt-file FILE --chat --pruning default --json
  $BUILD_DIR/bin/sliminfer-cli --server localhost:$PORT info
  $BUILD_DIR/bin/sliminfer-bench server --server localhost:$PORT --concurrency 4 --requests 16 --prompt-tokens 256
  grpcurl -plaintext localhost:$PORT list                 (server reflection)
  curl -N localhost:$HTTP_PORT/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"messages": [{"role": "user", "content": "Why is the sky blue?"}], "stream": true}'   (OpenAI API)
  curl -s localhost:$HTTP_PORT/metrics | grep sliminfer_   (Prometheus metrics)
Server log: $SERVER_LOG
EOF
wait "$SERVER_PID"
