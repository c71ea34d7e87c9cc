#!/usr/bin/env bash
# Renders a kustomize overlay (kubectl kustomize) and validates every object offline
# (tests/deploy/validate_manifests.py: Kubernetes schemas from kubernetes-validate, CRDs checked
# explicitly). Usage: check_manifests.sh cpu|gpu|adapter. Exit 77 (ctest: skipped) without kubectl.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET="${1:?usage: check_manifests.sh cpu|gpu|adapter}"
K8S_VERSION="${SLIM_K8S_VERSION:-1.30.0}"
VALIDATE=(python3 "$ROOT/tests/deploy/validate_manifests.py" --k8s-version "$K8S_VERSION"
          --rules "$ROOT/deploy/prometheus/sliminfer-rules.yml")

if [ "$TARGET" = adapter ]; then
  "${VALIDATE[@]}" "$ROOT/deploy/k8s/prometheus-adapter/adapter-config.yaml"
  exit 0
fi
if ! command -v kubectl >/dev/null; then
  echo "check_manifests: kubectl not installed; skipping (install kubectl, which bundles kustomize)" >&2
  exit 77
fi
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
kubectl kustomize "$ROOT/deploy/k8s/overlays/$TARGET" >"$OUT"
device=cpu; [ "$TARGET" = gpu ] && device=cuda
"${VALIDATE[@]}" --expect-device "$device" "$OUT"
if [ "$TARGET" = gpu ]; then
  grep -q 'nvidia.com/gpu: 1' "$OUT" || { echo "check_manifests: gpu overlay without an nvidia.com/gpu limit" >&2; exit 1; }
fi
