#!/usr/bin/env bash
# Installs what is missing, builds (CPU tests; CUDA code is compiled when nvcc is present),
# fetches the default model and the Qwen2 test model, and runs every test with ctest.
#   scripts/test.sh              the whole suite (what CI runs)
#   scripts/test.sh --sanitize   an ASan + UBSan build (build-asan/, CPU only) of the server and
#                                its tests, running the server suites and the KV store tests
#   scripts/test.sh --tsan       a TSan build (build-tsan/) running the scheduler and KV store tests
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE="${1:-}"
JOBS="${SLIM_JOBS:-$(nproc)}"

bash scripts/setup.sh
bash scripts/fetch-model.sh
bash scripts/fetch-model.sh qwen2.5-coder-0.5b  # Qwen2 fixtures (tests/engine/qwen2_test.cpp)
bash scripts/fetch-templates.sh  # llama.cpp's chat templates + jinja2 renders (jinja_reference_test)

# Builds `targets` in a sanitizer build directory and runs each test binary in turn (a binary
# at a time: sanitized servers are slow, and timing-based tests need their CPU).
sanitized() {
  local kind="$1" dir="$2"; shift 2
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLIM_WITH_CUDA=OFF -DSLIM_SANITIZE="$kind"
  cmake --build "$dir" -j "$JOBS" --target "$@"
  local failed=()
  for t in "$@"; do
    [[ "$t" == *_test ]] || continue
    echo "== $kind: $t"
    if ! "$dir/bin/$t" --gtest_brief=1; then failed+=("$t"); fi
  done
  if ((${#failed[@]})); then
    echo "$kind: FAILED: ${failed[*]}"
    return 1
  fi
  echo "$kind: all passed"
}

case "$MODE" in
  "")
    BUILD_DIR="${SLIM_BUILD_DIR:-build}"
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${SLIM_CMAKE_ARGS:-}
    cmake --build "$BUILD_DIR" -j "$JOBS"
    ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS"
    ;;
  --sanitize)
    # Leaks are checked too (LeakSanitizer), with no suppressions.
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    sanitized address build-asan sliminfer-server kv_store_test scheduler_test validation_test e2e_test \
      hardening_test http_test openai_request_test swap_test drain_test prometheus_test options_test
    ;;
  --tsan)
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
    sanitized thread build-tsan kv_store_test scheduler_test
    ;;
  *)
    echo "usage: scripts/test.sh [--sanitize | --tsan]" >&2
    exit 2
    ;;
esac
