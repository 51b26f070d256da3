#!/usr/bin/env bash
# Creates .venv with the pinned dependencies (idempotent). Java 17+ and Maven must be on PATH: the Kafka
# broker's jars are resolved from Maven Central on first use of the local stack.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in python3 java mvn; do
  command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 2; }
done
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
# The client SDKs the gateway tests drive, each in its own cached virtualenv.
bash scripts/sdk-envs.sh
