#!/usr/bin/env bash
# Renders /docs of a fresh embedded chatsys in headless Chromium, with no network beyond
# loopback, and checks that Swagger UI listed every operation of /openapi.json.
# Usage: .ci/docs-in-chromium.sh [SCREENSHOT.png]     (needs Debian's chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CHATSYS_BIN:-target/debug/chatsys}
shot=${1:-}
command -v chromium >/dev/null || { echo "chromium is needed: apt-get install chromium" >&2; exit 1; }
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
[ -x "$bin" ] || cargo build --locked
CHATSYS_LISTEN=127.0.0.1:0 CHATSYS_DATA_DIR="$work/data" "$bin" serve >"$work/log" 2>&1 &
pid=$!
addr=
for _ in $(seq 1 300); do
  addr=$(grep -ao 'listening addr=[0-9.:]*' "$work/log" | head -n1 | cut -d= -f2 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/log"; exit 1; }
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
       --disable-sync --no-first-run --disable-quic --user-data-dir="$work/profile" --virtual-time-budget=15000)
chromium "${flags[@]}" --dump-dom "http://$addr/docs" >"$work/dom.html" 2>"$work/chromium.log" || true
operations=$(grep -o 'class="opblock opblock-' "$work/dom.html" | wc -l)
expected=$(curl -sf "http://$addr/openapi.json" | python3 -c '
import json, sys
paths = json.load(sys.stdin)["paths"]
print(sum(1 for p in paths.values() for m in p if m in ("get", "put", "post", "patch", "delete")))')
echo "Swagger UI rendered $operations operation blocks; /openapi.json has $expected operations"
if [ -n "$shot" ]; then
  chromium "${flags[@]}" --window-size=1280,2400 --screenshot="$shot" "http://$addr/docs" 2>>"$work/chromium.log" || true
  echo "screenshot: $shot"
fi
[ "$operations" -eq "$expected" ] || { tail -20 "$work/chromium.log"; exit 1; }
