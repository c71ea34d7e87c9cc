#!/usr/bin/env bash
# Installs what is missing, builds (CPU tests; CUDA code is compiled when nvcc is present),
# fetches the default model and the Qwen2 test model, and runs every test with ctest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${SLIM_BUILD_DIR:-build}"
JOBS="${SLIM_JOBS:-$(nproc)}"

bash scripts/setup.sh
bash scripts/fetch-model.sh
bash scripts/fetch-model.sh qwen2.5-coder-0.5b  # Qwen2 fixtures (tests/engine/qwen2_test.cpp)

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${SLIM_CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "$JOBS"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS"
