#!/usr/bin/env bash
# Quick A/B helper: start `assetd serve` on a fresh data dir and upload one file three times
# with curl, printing MiB/s per upload. Usage: bench/big_upload.sh PORT FILE
# (e.g. FILE made by `head -c 536870912 /dev/urandom > /tmp/big.bin`). Loopback only.
set -euo pipefail
port=$1
file=$2
key=assetd_bench-key-bench-key-123
dir=$(mktemp -d)
cd "$(dirname "$0")/.."
ASSETD_DATA_DIR=$dir ASSETD_PORT=$port ASSETD_BOOTSTRAP_TENANT=bench \
  ASSETD_BOOTSTRAP_API_KEY=$key ASSETD_LOG_LEVEL=WARNING .venv/bin/assetd serve >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 60); do
  sleep 0.5
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
done
for i in 1 2 3; do
  curl -s -o /dev/null -w "%{speed_upload}\n" -X POST -T "$file" \
    -H "Authorization: Bearer $key" -H "Content-Type: application/octet-stream" \
    "http://127.0.0.1:$port/v1/assets?filename=big$i.bin"
done | awk '{printf "%.1f MiB/s\n", $1/1048576}'
