#!/usr/bin/env bash
# Fetches llama.cpp's vocab-only GGUFs and their expected token ids (ggml-vocab-*.gguf, .gguf.inp,
# .gguf.out, as llama.cpp's tests/test-tokenizer-0 reads them) from the llama-cpp-python sdist
# (scripts/fetch-model.sh llamacpp-sdist) into models/llamacpp-vocab/ (tests/tokenizer/llamacpp_vocab_test.cpp). The sdist's sha256
# is checked; a stamp file naming it makes a second run a no-op.
#
#   scripts/fetch-llamacpp-vocabs.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="${SLIM_MODELS_DIR:-$ROOT/models}"
DEST="$MODELS_DIR/llamacpp-vocab"
TARBALL="llama_cpp_python-0.3.36.tar.gz"
SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
PREFIX="llama_cpp_python-0.3.36/vendor/llama.cpp/models"
STAMP="$DEST/.source"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$TARBALL $SHA256" ]; then
  echo "fetch-llamacpp-vocabs: $DEST present ($(ls "$DEST" | wc -l) files from $TARBALL)"
  exit 0
fi

bash "$ROOT/scripts/fetch-model.sh" llamacpp-sdist  # models/$TARBALL, size and sha256 checked
TMP="$(mktemp -d "$MODELS_DIR/.fetch.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
tar -xzf "$MODELS_DIR/$TARBALL" -C "$TMP" --wildcards "$PREFIX/ggml-vocab-*"
rm -rf "$DEST"
mv "$TMP/$PREFIX" "$DEST"
echo "$TARBALL $SHA256" > "$STAMP"
echo "fetch-llamacpp-vocabs: $DEST ready ($(ls "$DEST" | wc -l) files)"
