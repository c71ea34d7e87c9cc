#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan, coverage in every library) and runs one
# (or each) for SECONDS (default 600) from its seed corpus; new inputs go to build-fuzz/corpus/<target>.
#   scripts/fuzz.sh [gguf|safetensors|hf_config|tokenizer|request|all] [SECONDS]
# The request and tokenizer fuzzers load the default model (scripts/fetch-model.sh), the tokenizer
# fuzzer also llama.cpp's llama-spm vocabulary (scripts/fetch-llamacpp-vocabs.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WHICH="${1:-gguf}"
SECONDS_TO_RUN="${2:-600}"
bash scripts/setup.sh
bash scripts/fetch-model.sh
bash scripts/fetch-llamacpp-vocabs.sh  # the tokenizer fuzzer's SentencePiece vocabulary
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DSLIM_BUILD_FUZZERS=ON -DSLIM_WITH_CUDA=OFF -DSLIM_BUILD_TESTS=ON

# run NAME [-flags...] [seed dirs...]: libFuzzer writes new inputs to the first corpus directory
# it is given, so build-fuzz/corpus/NAME goes before the committed seed directories.
run() {
  local name="$1"; shift
  local flags=() seeds=()
  for a in "$@"; do
    case "$a" in -*) flags+=("$a") ;; *) seeds+=("$a") ;; esac
  done
  cmake --build build-fuzz -j "$(nproc)" --target "${name}_fuzz"
  mkdir -p "build-fuzz/corpus/$name"
  ./build-fuzz/bin/"${name}_fuzz" -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=4096 -print_final_stats=1 \
    "${flags[@]}" "build-fuzz/corpus/$name" "${seeds[@]}"
}
case "$WHICH" in
  gguf|all) run gguf -dict=tests/fuzz/gguf.dict -max_len=65536 tests/fixtures/malformed tests/fixtures/gguf_seed ;;&
  safetensors|all) run safetensors -dict=tests/fuzz/safetensors.dict -max_len=8192 tests/fixtures/malformed_safetensors \
    tests/fixtures/safetensors_seed ;;&
  hf_config|all) run hf_config -dict=tests/fuzz/hf_config.dict -max_len=4096 tests/fuzz/hf_config_seeds ;;&
  tokenizer|all) run tokenizer -max_len=4096 tests/fuzz/tokenizer_seeds ;;&
  request|all) run request -max_len=8192 tests/fuzz/request_seeds ;;&
  gguf|safetensors|hf_config|tokenizer|request|all) ;;
  *) echo "usage: scripts/fuzz.sh [gguf|safetensors|hf_config|tokenizer|request|all] [SECONDS]" >&2; exit 2 ;;
esac
