#!/usr/bin/env bash
# Runs the black-box contract suite (tests/contract/contract.py, and the shared copy
# ../shared/acceptance/contract.py when that folder is present) against freshly started
# chatsys processes and fails on any check that fails, except the ones listed in
# .ci/contract-known-failures (checks of features not built yet, each named exactly).
# Usage: .ci/contract.sh MODE
#   embedded      one `chatsys serve`, data in a temporary folder
#   distributed   one `chatsys serve` and one `chatsys worker` on this machine's MariaDB,
#                 Redis and RabbitMQ (a database, key prefix and queue of their own)
#   scaled        three servers and two workers behind nginx (Debian's nginx-light)
# In the distributed modes the search checks are skipped: search needs Elasticsearch.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-embedded}
bin=${CHATSYS_BIN:-target/debug/chatsys}
shared=../shared/acceptance/contract.py
work=$(mktemp -d)
name="chatsys_ci_$$_$RANDOM"
pids=()
nginx_pid=

cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  # nginx's master stops its workers on TERM (a KILL would orphan them)
  if [ -n "$nginx_pid" ]; then kill -TERM "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
  if [ "$mode" != embedded ]; then
    mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $name" 2>/dev/null || true
    rabbitmqctl -q delete_queue "$name.commands" >/dev/null 2>&1 || true
    rabbitmqctl -q delete_queue "$name.commands.dead" >/dev/null 2>&1 || true
    redis-cli --scan --pattern "$name:*" | xargs -r redis-cli del >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$bin" ] || cargo build --locked

# start NAME SUBCOMMAND: starts chatsys and waits for it to log its address (into $addr)
start() {
  local log="$work/$1.log"
  CHATSYS_LISTEN=127.0.0.1:0 CHATSYS_OPS_LISTEN=127.0.0.1:0 CHATSYS_DATA_DIR="$work/data" "$bin" "$2" >"$log" 2>&1 &
  pids+=($!)
  addr=
  for _ in $(seq 1 300); do
    addr=$(grep -ao 'listening addr=[0-9.:]*' "$log" | head -n1 | cut -d= -f2 || true)
    [ -n "$addr" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  cat "$log"; echo "chatsys $2 did not start" >&2; exit 1
}

case "$mode" in
  embedded)
    start api serve; base="http://$addr" ;;
  distributed|scaled)
    mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE $name CHARACTER SET utf8mb4"
    export CHATSYS_DATABASE_URL="mysql://root@127.0.0.1:3306/$name" CHATSYS_REDIS_URL=redis://127.0.0.1:6379 \
      CHATSYS_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f" CHATSYS_AMQP_QUEUE="$name.commands" CHATSYS_REDIS_PREFIX="$name"
    export CONTRACT_SKIP=search
    if [ "$mode" = distributed ]; then
      start worker worker; start api serve; base="http://$addr"
    else
      start worker1 worker; start worker2 worker
      upstreams=""
      for i in 1 2 3; do start "api$i" serve; upstreams+="    server $addr;"$'\n'; done
      port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
      mkdir -p "$work/nginx"
      cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi; uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;
  upstream api {
$upstreams    keepalive 32;
  }
  server {
    listen 127.0.0.1:$port;
    client_max_body_size 1m;
    # in memory: the workers run as nobody and cannot write a root-owned temp folder
    client_body_buffer_size 1m;
    location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
      /usr/sbin/nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
      nginx_pid=$!
      for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
      base="http://127.0.0.1:$port"
    fi ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
echo "chatsys ($mode) answering at $base"

# check SUITE: runs one copy of the suite; fails on a failing check that is not known
check() {
  local suite=$1 out="$work/contract.$RANDOM.out"
  echo "--- $suite"
  set +e
  python3 "$suite" "$base" | tee "$out"
  set -e
  local known=.ci/contract-known-failures unexpected ran
  unexpected=$(grep '^FAIL ' "$out" | sed -e 's/^FAIL //' -e 's/  -- .*$//' \
    | grep -vxF -f <(grep -v '^#' "$known" | sed '/^$/d') || true)
  if [ -n "$unexpected" ]; then
    echo "contract checks that failed and are not known to be missing:" >&2
    echo "$unexpected" >&2
    exit 1
  fi
  ran=$(grep -c '^\(ok\|FAIL\) ' "$out")
  [ "$ran" -gt 50 ] || { echo "the contract ran only $ran checks" >&2; exit 1; }
}
check tests/contract/contract.py
if [ -f "$shared" ]; then
  check "$shared"
else
  echo "note: $shared is not here (a clone without ../shared): only the repository's copy of the suite ran"
fi

# SIGTERM: every process finishes what is in flight and exits 0
for pid in "${pids[@]}"; do
  kill -TERM "$pid"
  status=0
  wait "$pid" || status=$?
  [ "$status" -eq 0 ] || { cat "$work"/*.log; echo "a chatsys process exited with $status after SIGTERM" >&2; exit 1; }
done
pids=()
echo "contract ($mode): no unexpected failures; clean exit on SIGTERM"
