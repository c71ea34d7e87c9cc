#!/usr/bin/env bash
# promtool check rules / check config on deploy/prometheus (config run from a copy, so rule_files
# resolve next to it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PROMTOOL="${PROMTOOL:-$(command -v promtool || true)}"
[ -n "$PROMTOOL" ] || { echo "promtool not installed (scripts/setup.sh installs the prometheus package)" >&2; exit 1; }
"$PROMTOOL" check rules "$ROOT/deploy/prometheus/sliminfer-rules.yml"
"$PROMTOOL" check config "$ROOT/deploy/prometheus/prometheus.yml"
