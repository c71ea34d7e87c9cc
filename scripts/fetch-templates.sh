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
DEST="$MODELS_DIR/templates"
PY=${PYTHON:-python3}

mkdir -p "$MODELS_DIR"
SDIST="$MODELS_DIR/$SDIST_NAME"
bash "$ROOT/scripts/fetch-model.sh" llamacpp-sdist  # $SDIST, size and sha256 checked
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
