#!/usr/bin/env bash
# Live-events benchmark (issue targets in docs/benchmarks.md): one embedded-mode chatsys
# (release build) per measurement, driven by crates/bench-events (a Rust program; subscribers are
# plain sockets).
#
#   bench/events.sh [IDLE] [FANOUT_SUBSCRIBERS] [RATE] [SECONDS]    defaults: 10000 1000 200 10
#
# Prints: the server's RSS with IDLE idle subscribers; 201 → event latency at each of
# FANOUT_SUBSCRIBERS subscribers of one chat while RATE creates/s arrive; and closed-loop
# create throughput without and with 1,000 idle subscribers open.
set -euo pipefail
cd "$(dirname "$0")/.."
idle=${1:-10000}
fanout=${2:-1000}
rate=${3:-200}
seconds=${4:-10}
ulimit -n "$(ulimit -Hn)" # this process opens up to $idle sockets too
cargo build --release --locked -q -p chatsys -p chatsys-bench-events
bench=target/release/chatsys-bench-events

work=$(mktemp -d)
pid=
stop() { [ -n "$pid" ] && { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }; pid=; }
trap 'stop; rm -rf "$work"' EXIT
start() { # a fresh server in a fresh data dir; sets $pid and $base
  rm -rf "$work/data" && : >"$work/server.log"
  CHATSYS_LISTEN=127.0.0.1:0 CHATSYS_DATA_DIR="$work/data" RUST_LOG=warn,chatsys=info \
    target/release/chatsys serve >"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    addr=$(grep -ao 'listening addr=[0-9.:]*' "$work/server.log" | cut -d= -f2 || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  base="http://$addr"
}

echo "live-events benchmark (embedded mode), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
start
grep -a 'open-files' "$work/server.log" | head -1 || true
"$bench" idle "$base" "$pid" "$idle"
stop
start
"$bench" fanout "$base" "$fanout" "$rate" "$seconds"
stop
start
"$bench" throughput "$base" 1000 "$seconds" 64
stop
