#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan, coverage in every library) and runs the
# GGUF parser fuzzer for SECONDS (default 600) from the malformed and seed fixtures.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_TO_RUN="${1:-600}"
bash scripts/setup.sh
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DSLIM_BUILD_FUZZERS=ON -DSLIM_BUILD_SERVER=OFF -DSLIM_WITH_CUDA=OFF \
  -DSLIM_BUILD_TESTS=ON
cmake --build build-fuzz -j "$(nproc)" --target gguf_fuzz
CORPUS="build-fuzz/corpus"
mkdir -p "$CORPUS"
./build-fuzz/bin/gguf_fuzz -dict=tests/fuzz/gguf.dict -max_total_time="$SECONDS_TO_RUN" -max_len=65536 \
  -rss_limit_mb=2048 -print_final_stats=1 "$CORPUS" tests/fixtures/malformed tests/fixtures/gguf_seed
