#!/usr/bin/env bash
# The serving benchmark of the 8B shape on one GPU through gRPC (bench/serving.md, "Chunked and
# batched prefill"): starts the bundled server (scripts/bundle-gpu.sh) with synthetic
# LLaMA-3.1-8B weights and Llama-3's vocabulary, once per prefill budget, and runs the named
# workloads against it with sliminfer-bench server, one JSON file per run under OUT.
#   bench/serving_gpu.sh BUNDLE VOCAB_GGUF OUT BUDGET:WORKLOAD,WORKLOAD... [BUDGET:...]
# Workloads:
#   alone32k   one 32K prompt at a time (pruned, then dense): the long prompt's TTFT
#   mixed      1K-token streams with 32K prompts arriving among them (7:1), pruning default,
#              closed loop at concurrency 8
#   poisson    the same mix arriving as a Poisson process of 4 requests/s (open loop)
#   decode     1K prompts, 256 output tokens, concurrency 1 and 64
#   prefill    8K prompts, 64 output tokens, concurrency 32, pruning default and off
set -uo pipefail
B="${1:?bundle}"; VOCAB="${2:?vocab}"; OUT="${3:?out}"; shift 3
mkdir -p "$OUT"
PORT=50071
bench() {  # name, bench flags...
  local name="$1"; shift
  local t0=$SECONDS
  timeout 300 "$B/run.sh" sliminfer-bench server --server 127.0.0.1:$PORT --json "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"
  echo "  $name: rc=$? $((SECONDS - t0)) s"
}
for spec in "$@"; do
  budget="${spec%%:*}"; workloads="${spec#*:}"
  t0=$SECONDS
  "$B/run.sh" sliminfer-server --model synthetic:llama-3.1-8b --tokenizer "$VOCAB" --device cuda --max-seqs 64 \
    --max-prefill-tokens-per-step "$budget" --port $PORT --http-port -1 --log-level warn >"$OUT/server-$budget.log" 2>&1 &
  pid=$!
  if ! timeout 240 "$B/run.sh" sliminfer-cli --server 127.0.0.1:$PORT health --wait 240 >/dev/null; then
    echo "server (budget $budget) did not start"; tail -5 "$OUT/server-$budget.log"; kill $pid; wait $pid; continue
  fi
  echo "budget $budget: serving after $((SECONDS - t0)) s"
  for w in ${workloads//,/ }; do
    case "$w" in
      alone32k)
        bench "b$budget-alone32k-pruned" --concurrency 1 --requests 3 --prompt-tokens 32768 --max-tokens 8 --pruning default --warmup 1
        bench "b$budget-alone32k-dense" --concurrency 1 --requests 2 --prompt-tokens 32768 --max-tokens 8 --pruning off --warmup 1 ;;
      mixed)
        bench "b$budget-mixed" --concurrency 8 --requests 64 --prompt-tokens 1024,1024,1024,1024,1024,1024,1024,32768 \
          --max-tokens 128 --pruning default --warmup 8 ;;
      poisson)
        bench "b$budget-poisson" --rate 4 --requests 64 --prompt-tokens 1024,1024,1024,1024,1024,1024,1024,32768 \
          --max-tokens 128 --pruning default --warmup 8 ;;
      decode)
        bench "b$budget-decode-c1" --concurrency 1 --requests 4 --prompt-tokens 1024 --max-tokens 256 --warmup 2
        bench "b$budget-decode-c64" --concurrency 64 --requests 128 --prompt-tokens 1024 --max-tokens 256 --warmup 2 ;;
      prefill)
        bench "b$budget-prefill-pruned" --concurrency 32 --requests 96 --prompt-tokens 8192 --max-tokens 64 --pruning default --warmup 2
        bench "b$budget-prefill-dense" --concurrency 32 --requests 96 --prompt-tokens 8192 --max-tokens 64 --pruning off --warmup 2 ;;
      *) echo "unknown workload $w" ;;
    esac
  done
  kill -TERM $pid; wait $pid
done
