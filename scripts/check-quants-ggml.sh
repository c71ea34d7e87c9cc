#!/usr/bin/env bash
# Checks every dequantization kernel (engine/gguf/quant.cpp) bit for bit against ggml's own C
# code: builds tests/ggml_oracle/dequant_vs_ggml.cpp against ggml-quants.c taken from the
# llama.cpp sources inside the llama-cpp-python 0.3.36 sdist (PyPI; cached in models/ and checked
# by sha256; nothing is copied into the repo) and the build's slim_gguf/slim_core libraries.
#
#   scripts/check-quants-ggml.sh [BUILD_DIR]   (default build-cpu; its libraries must be built)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${1:-build-cpu}"
MODELS_DIR="${SLIM_MODELS_DIR:-$ROOT/models}"
SDIST_NAME="llama_cpp_python-0.3.36.tar.gz"
SDIST="$MODELS_DIR/$SDIST_NAME"
MODEL="$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"

for lib in engine/libslim_gguf.a engine/libslim_core.a; do
  [ -f "$BUILD_DIR/$lib" ] || { echo "check-quants-ggml: $BUILD_DIR/$lib is missing: build slim_gguf first" >&2; exit 2; }
done
[ -f "$MODEL" ] || { echo "check-quants-ggml: $MODEL is missing: run scripts/fetch-model.sh" >&2; exit 2; }

bash "$ROOT/scripts/fetch-model.sh" llamacpp-sdist  # $SDIST, size and sha256 checked

OUT="$BUILD_DIR/ggml-oracle"
GGML="llama_cpp_python-0.3.36/vendor/llama.cpp/ggml"
mkdir -p "$OUT"
tar -xzf "$SDIST" -C "$OUT" "$GGML/include" "$GGML/src/ggml-quants.c" "$GGML/src/ggml-quants.h" \
  "$GGML/src/ggml-common.h" "$GGML/src/ggml-impl.h" "$GGML/src/ggml-cpu/ggml-cpu-impl.h"
CC="${CC:-cc}"
CXX="${CXX:-c++}"
"$CC" -O2 -std=c11 -w -I"$OUT/$GGML/include" -I"$OUT/$GGML/src" -I"$OUT/$GGML/src/ggml-cpu" \
  -c "$OUT/$GGML/src/ggml-quants.c" -o "$OUT/ggml-quants.o"
"$CXX" -O2 -std=c++20 -Wall -Wextra -I"$ROOT" tests/ggml_oracle/dequant_vs_ggml.cpp "$OUT/ggml-quants.o" \
  "$BUILD_DIR/engine/libslim_gguf.a" "$BUILD_DIR/engine/libslim_core.a" -lm -o "$OUT/dequant_vs_ggml"
"$OUT/dequant_vs_ggml" "$MODEL"
