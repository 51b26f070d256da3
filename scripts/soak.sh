#!/usr/bin/env bash
# Long runs on a private local stack, stopped by PID:
#   bash scripts/soak.sh --minutes 20 --outage-seconds 60 --kills-per-round 10   (faults: tests/integration/soak.py)
#   bash scripts/soak.sh --hostile --messages 100000 [--seed 1]                 (hostile input: tests/integration/hostile.py)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
if [ "${1:-}" = "--hostile" ]; then
  shift
  exec .venv/bin/python -m tests.integration.hostile "$@"
fi
exec .venv/bin/python -m tests.integration.soak "$@"
