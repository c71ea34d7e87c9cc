#!/usr/bin/env bash
# Installs what the build and tests need: Debian packages and PyPI tools. Idempotent:
# packages already present are skipped, so a second run costs a few seconds.
set -euo pipefail

DEB_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git unzip python3 python3-pip
  libopenblas-dev libpcre2-dev libicu-dev nlohmann-json3-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libspdlog-dev libfmt-dev prometheus-cpp-dev libcpp-httplib-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-dev prometheus openssl
)
# Import names; the loop below maps them to PyPI names (and versions) where they differ.
# openai: the HTTP API test (tests/server/openai_api_test.py) speaks through the official client.
# tokenizers, transformers: the tokenizer.json references (scripts/make-hf-tokenizers.py);
# safetensors, transformers: scripts/make-hf-smollm2.py rebuilds the default model as a Hugging
# Face checkpoint (no torch needed). jinja2: the reference renders of the chat templates
# (scripts/render_templates.py, make_jinja_cases.py).
PIP_PACKAGES=(gguf numpy kubernetes_validate openai tokenizers safetensors transformers jinja2)
# --peers: also llama-cpp-python (compiles llama.cpp, ~15 min on 2 cores), for regenerating the
# reference fixtures and running the llama.cpp benchmark peer. Not needed to build or test.
if [ "${1:-}" = "--peers" ]; then PIP_PACKAGES+=(llama_cpp); fi

need=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

PY=${PYTHON:-python3}
missing_py=()
for p in "${PIP_PACKAGES[@]}"; do
  if ! "$PY" -c "import ${p}" 2>/dev/null; then
    case "$p" in
      llama_cpp) missing_py+=(llama-cpp-python) ;;
      transformers) missing_py+=("transformers>=5,<6") ;;  # its GGUF tokenizer converter's v5 layout
      *) missing_py+=("$p") ;;
    esac
  fi
done
if ((${#missing_py[@]})); then
  echo "setup: installing PyPI packages: ${missing_py[*]}"
  PIP_FLAGS=(-q)
  # Debian 12's and Ubuntu 24.04's own python3 refuse pip installs (PEP 668) unless told.
  if "$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED")))'; then
    PIP_FLAGS+=(--break-system-packages)
  fi
  "$PY" -m pip install "${PIP_FLAGS[@]}" "${missing_py[@]}"
fi
echo "setup: ok"
