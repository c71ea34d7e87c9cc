#!/usr/bin/env bash
# Installs what is missing, builds (CPU tests; CUDA code is compiled when nvcc is present),
# fetches the default model and the Qwen2 test model, writes the K-quant test model, and runs
# every test with ctest.
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
# llama.cpp's vocab GGUFs, and the tokenizer.json references made from them and SmolLM2
# (tests/tokenizer/llamacpp_vocab_test.cpp, hf_tokenizer_test.cpp; ~50 s the first time).
bash scripts/fetch-llamacpp-vocabs.sh
bash scripts/fetch-model.sh smollm2
"${PYTHON:-python3}" scripts/make-hf-tokenizers.py
bash scripts/fetch-model.sh
bash scripts/fetch-model.sh qwen2.5-coder-0.5b  # Qwen2 fixtures (tests/engine/qwen2_test.cpp)
# The default model re-quantized to Q2_K/Q3_K/IQ4_XS/IQ4_NL (tests/engine/kquant_model_test.cpp);
# ~15 s the first time, skipped when the file's sha256 already matches the fixture.
"${PYTHON:-python3}" scripts/make-kquant-model.py
# The default model as a Hugging Face checkpoint (tests/engine/hf_smollm2_test.cpp); a no-op
# when up to date.
"${PYTHON:-python3}" scripts/make-hf-smollm2.py
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
    # Every dequantization kernel against ggml's own C code (~10 s; before ctest, whose summary
    # stays the last line).
    bash scripts/check-quants-ggml.sh "$BUILD_DIR"
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
