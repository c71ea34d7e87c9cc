#!/usr/bin/env bash
# A bounded soak of the real server over loopback (tests/soak/soak.cpp): MINUTES (default 15) of
# mixed gRPC and HTTP load with cancels, aborts, deadlines and invalid requests; fails when the
# server's RSS grows more than 5% after a 2-minute warm-up, its descriptors grow, a call ends in
# an outcome it should not, or KV stays allocated. Writes the samples to build/soak.json.
#   scripts/soak.sh [MINUTES]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MINUTES="${1:-15}"
BUILD_DIR="${SLIM_BUILD_DIR:-build}"
bash scripts/setup.sh
bash scripts/fetch-model.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${SLIM_CMAKE_ARGS:-}
cmake --build "$BUILD_DIR" -j "$(nproc)" --target sliminfer-soak sliminfer-server
WARMUP=$(python3 -c "print(min(2.0, $MINUTES / 4))")
exec "$BUILD_DIR/bin/sliminfer-soak" --minutes "$MINUTES" --warmup-minutes "$WARMUP" --out "$BUILD_DIR/soak.json"
