#!/usr/bin/env bash
# CPU TTFT of candidate pruning schedules at one prompt length, dense measured before and after
# the candidates (the VM's speed drifts), one JSON line per run into $OUT.
#   bench/quality/cpu_schedule_sweep.sh OUT.jsonl LENGTH 'sched1;sched2;...'
set -euo pipefail
out=$1 len=$2 scheds=$3
bench=${BENCH:-build/bin/sliminfer-bench}
model=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
ctx=$((len + 64))
: >"$out"
run() { "$bench" engine --model "$model" --lengths "$len" --decode-tokens 2 --context "$ctx" --json "$@" >>"$out"; }
run --modes dense
IFS=';' read -ra list <<<"$scheds"
for s in "${list[@]}"; do run --modes pruned --schedule "$s"; done
run --modes dense
