#!/usr/bin/env bash
# The client virtualenvs the gateway tests drive (real Langfuse SDKs and the OpenTelemetry SDK), one per
# client, cached under ${LFPIPE_SDK_ENVS:-~/.cache/lfpipe/sdk-envs}; a marker file holds the pins, so a
# changed pin rebuilds that env and an unchanged one costs nothing.
set -euo pipefail
root="${LFPIPE_SDK_ENVS:-$HOME/.cache/lfpipe/sdk-envs}"
declare -A pins=(
  [langfuse-v2]="langfuse==2.60.10"
  [langfuse-v5]="langfuse==5.2.0"
  [otel]="opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2"
)
for name in "${!pins[@]}"; do
  env="$root/$name"
  if [ "$(cat "$env/.pins" 2>/dev/null)" != "${pins[$name]}" ]; then
    rm -rf "$env"
    python3 -m venv "$env"
    # shellcheck disable=SC2086 # the pins are separate words
    "$env/bin/python" -m pip install -q ${pins[$name]}
    echo "${pins[$name]}" > "$env/.pins"
  fi
done
