#!/usr/bin/env bash
# Quick start: installs what is missing, builds, fetches the default model, and generates a
# chat completion with it on this machine's CPU. (The gRPC server takes over this demo once
# it lands.)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${SLIM_BUILD_DIR:-build}"

bash scripts/setup.sh
bash scripts/fetch-model.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${SLIM_CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "$(nproc)" --target sliminfer-bench

MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT="${1:-Explain in three sentences why the sky is blue.}"
echo
echo "== $MODEL, chat, greedy, up to 128 tokens =="
echo "user: $PROMPT"
echo -n "assistant: "
"$BUILD_DIR/bin/sliminfer-bench" generate --model "$MODEL" --chat --prompt "$PROMPT" --max-tokens 128
