#!/usr/bin/env bash
# promtool check rules / check config / test rules on deploy/prometheus (rule_files and the unit
# test resolve relative to their own files).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PROMTOOL="${PROMTOOL:-$(command -v promtool || true)}"
[ -n "$PROMTOOL" ] || { echo "promtool not installed (scripts/setup.sh installs the prometheus package)" >&2; exit 1; }
"$PROMTOOL" check rules "$ROOT/deploy/prometheus/sliminfer-rules.yml"
"$PROMTOOL" check config "$ROOT/deploy/prometheus/prometheus.yml"
# Alert unit tests: each alert fires on a bad series and stays quiet on a healthy one.
cd "$ROOT/deploy/prometheus" && "$PROMTOOL" test rules sliminfer-rules.test.yml
