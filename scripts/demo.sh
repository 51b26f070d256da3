#!/usr/bin/env bash
# README command 1: set up, start the local stack, replay the bundled recording through a worker, summarise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/lfpipe demo "$@"
