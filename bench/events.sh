#!/usr/bin/env bash
# Live-events benchmark (issue targets in docs/benchmarks.md): one chatsys
# (release build) per measurement, driven by crates/bench-events (a Rust program; subscribers are
# plain sockets).
#
#   bench/events.sh [IDLE] [FANOUT_SUBSCRIBERS] [RATE] [SECONDS]    defaults: 10000 1000 200 10
#   BENCH_MODE=distributed bench/events.sh ...   one `chatsys serve` and one `chatsys worker` on
#     this machine's MariaDB, Redis and RabbitMQ (a database, prefix and queue of their own)
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
source bench/server.sh
trap 'bench_stop; rm -rf "$work"' EXIT

echo "live-events benchmark ($mode mode), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
bench_start "$work"
grep -a 'open-files' "$work/server.log" | head -1 || true
"$bench" idle "$base" "$pid" "$idle"
bench_stop
bench_start "$work"
"$bench" fanout "$base" "$fanout" "$rate" "$seconds"
bench_stop
bench_start "$work"
"$bench" throughput "$base" 1000 "$seconds" 64
bench_stop
