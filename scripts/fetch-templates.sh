#!/usr/bin/env bash
# Fetches the chat templates llama.cpp ships (vendor/llama.cpp/models/templates/*.jinja of the
# llama-cpp-python sdist, pinned by version and sha256) into models/templates/, then renders
# each with Python's jinja2 (scripts/render_templates.py) into models/templates/reference.json:
# the reference of tests/tokenizer/jinja_reference_test.cpp. Skips what is already there.
#
#   scripts/fetch-templates.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="${SLIM_MODELS_DIR:-$ROOT/models}"
SDIST_VERSION="0.3.36"
SDIST_NAME="llama_cpp_python-$SDIST_VERSION.tar.gz"
SDIST_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
DEST="$MODELS_DIR/templates"
PY=${PYTHON:-python3}

mkdir -p "$MODELS_DIR"
SDIST="$MODELS_DIR/$SDIST_NAME"
if ! { [ -f "$SDIST" ] && echo "$SDIST_SHA256  $SDIST" | sha256sum --check --status; }; then
  echo "fetch-templates: downloading the llama-cpp-python==$SDIST_VERSION source distribution from PyPI"
  TMP="$(mktemp -d "$MODELS_DIR/.fetch.XXXXXX")"
  trap 'rm -rf "$TMP"' EXIT
  if ! "$PY" -m pip download --no-deps --no-binary :all: --quiet -d "$TMP" "llama-cpp-python==$SDIST_VERSION"; then
    echo "fetch-templates: could not download llama-cpp-python==$SDIST_VERSION; place $SDIST_NAME in $MODELS_DIR yourself." >&2
    exit 2
  fi
  echo "$SDIST_SHA256  $TMP/$SDIST_NAME" | sha256sum --check --status ||
    { echo "fetch-templates: sha256 mismatch for $SDIST_NAME (expected $SDIST_SHA256)" >&2; exit 3; }
  mv "$TMP/$SDIST_NAME" "$SDIST"
fi

if [ ! -f "$DEST/.extracted-$SDIST_VERSION" ]; then
  rm -rf "$DEST"
  mkdir -p "$DEST"
  tar -xzf "$SDIST" -C "$DEST" --strip-components=5 --wildcards \
    "llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp/models/templates/*.jinja"
  touch "$DEST/.extracted-$SDIST_VERSION"
fi
echo "fetch-templates: $(ls "$DEST"/*.jinja | wc -l) templates in $DEST"

# The reference is regenerated whenever the renderer script is newer than it.
REF="$DEST/reference.json"
if [ ! -f "$REF" ] || [ "$ROOT/scripts/render_templates.py" -nt "$REF" ]; then
  "$PY" "$ROOT/scripts/render_templates.py" --templates "$DEST" --out "$REF"
fi
echo "fetch-templates: $REF ready"
