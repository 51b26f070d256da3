#!/usr/bin/env bash
# Longer fault-injection soak on a private local stack (see tests/integration/soak.py):
#   bash scripts/soak.sh --minutes 20 --outage-seconds 60 --kills-per-round 10
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
exec .venv/bin/python -m tests.integration.soak "$@"
