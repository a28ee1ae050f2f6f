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

mode=${BENCH_MODE:-embedded}
work=$(mktemp -d)
pid=
worker=
name=
stop() {
  for p in $pid $worker; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  pid= worker=
  if [ -n "$name" ]; then
    mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $name"
    rabbitmqctl -q delete_queue "$name.commands" >/dev/null 2>&1 || true
    redis-cli --scan --pattern "$name:*" | xargs -r redis-cli del >/dev/null
    name=
  fi
}
trap 'stop; rm -rf "$work"' EXIT
start() { # a fresh server in a fresh data dir (distributed: and a worker, database, queue); sets $pid and $base
  rm -rf "$work/data" && : >"$work/server.log"
  if [ "$mode" = distributed ]; then # one `chatsys serve` and one `chatsys worker` on this machine's services
    name="chatsys_bench_events_$$_$RANDOM"
    mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE $name CHARACTER SET utf8mb4"
    export CHATSYS_DATABASE_URL="mysql://root@127.0.0.1:3306/$name" CHATSYS_REDIS_URL=redis://127.0.0.1:6379 \
      CHATSYS_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f" CHATSYS_AMQP_QUEUE="$name.commands" CHATSYS_REDIS_PREFIX="$name"
    RUST_LOG=warn target/release/chatsys worker >"$work/worker.log" 2>&1 &
    worker=$!
  fi
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

echo "live-events benchmark ($mode mode), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
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
