#!/usr/bin/env bash
# README command 2: set up, lint, then the unit and integration tests (the integration tests start their own
# Kafka and SeaweedFS on free 127.0.0.1 ports and stop them by PID).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
