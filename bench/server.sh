# One chatsys (release build) for a benchmark: sourced by bench/run.sh and bench/events.sh.
#
#   bench_start DIR   a fresh server, data in DIR/data, log in DIR/server.log; with
#                     BENCH_MODE=distributed also a `chatsys worker` on this machine's MariaDB,
#                     Redis and RabbitMQ, with a database, key prefix and queue of their own.
#                     Sets $pid, $worker, $name (the database, prefix and queue) and $base.
#   bench_seed CHATS MESSAGES   the data bench/wrk.lua's scenarios use: one application,
#                     CHATS chats, MESSAGES messages in chat 1; exports TOKEN, CHATS, HOT_CHAT
#                     and MESSAGES for wrk.lua.
#   bench_wrk_server CHATS MESSAGES   for the wrk scripts (run.sh, cpu.sh): checks for wrk,
#                     builds the release binary unless BENCH_BINARY names one, starts a server
#                     in a temporary $work stopped and removed on exit, and seeds it.
#   bench_stop        stops them and removes what distributed mode made.
#   bench_rss_peak_mib  the server's peak resident memory so far (VmHWM), in MiB.
#   bench_scenarios DEFAULT_KINDS [DURATION] [CONNECTIONS] [KIND...]   for the per-scenario
#                     scripts (cpu.sh, waits.sh): sets $duration (10), $conns (256) and the
#                     array $kinds (the space-separated DEFAULT_KINDS unless kinds are
#                     given), then bench_wrk_server with $BENCH_CHATS (1,000) chats and
#                     $BENCH_SEED_MESSAGES (1,000) messages.
mode=${BENCH_MODE:-embedded}
pid= worker= name=

bench_start() {
  local work=$1 addr=
  rm -rf "$work/data" && : >"$work/server.log"
  if [ "$mode" = distributed ]; then
    name="chatsys_bench_$$_$RANDOM"
    mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE $name CHARACTER SET utf8mb4"
    export CHATSYS_DATABASE_URL="mysql://root@127.0.0.1:3306/$name" CHATSYS_REDIS_URL=redis://127.0.0.1:6379 \
      CHATSYS_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f" CHATSYS_AMQP_QUEUE="$name.commands" CHATSYS_REDIS_PREFIX="$name"
    RUST_LOG=warn "${BENCH_BINARY:-target/release/chatsys}" worker >"$work/worker.log" 2>&1 &
    worker=$!
  fi
  CHATSYS_LISTEN=127.0.0.1:0 CHATSYS_DATA_DIR="$work/data" RUST_LOG=warn,chatsys=info \
    "${BENCH_BINARY:-target/release/chatsys}" serve >"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    addr=$(grep -ao 'listening addr=[0-9.:]*' "$work/server.log" | cut -d= -f2 || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  base="http://$addr"
}

bench_stop() {
  local p
  for p in $pid $worker; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  pid= worker=
  if [ -n "$name" ]; then
    mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $name"
    rabbitmqctl -q delete_queue "$name.commands" >/dev/null 2>&1 || true
    redis-cli --scan --pattern "$name:*" | xargs -r redis-cli del >/dev/null
    name=
  fi
}

bench_rss_peak_mib() { awk '/VmHWM/ {printf "%d", $2 / 1024}' /proc/"$pid"/status; }

bench_seed() {
  TOKEN=$(curl -sf -X POST "$base/applications" -H 'Content-Type: application/json' -d '{"name":"bench"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  python3 - "$base" "$TOKEN" "$1" "$2" <<'PY'
import concurrent.futures as cf, http.client, json, sys, urllib.parse
base, token, chats, messages = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
u = urllib.parse.urlsplit(base)
def post(path, body):
    c = http.client.HTTPConnection(u.hostname, u.port)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse(); r.read(); assert r.status == 201, r.status
with cf.ThreadPoolExecutor(16) as ex:
    list(ex.map(lambda _: post(f"/applications/{token}/chats", {}), range(chats)))
    list(ex.map(lambda i: post(f"/applications/{token}/chats/1/messages", {"body": f"seed message {i}"}), range(messages)))
PY
  export TOKEN CHATS=$1 HOT_CHAT=1 MESSAGES=$2
}

bench_wrk_server() {
  command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
  [ -n "${BENCH_BINARY:-}" ] || cargo build --release --locked -q
  work=$(mktemp -d)
  trap 'bench_stop; rm -rf "$work"' EXIT
  bench_start "$work"
  bench_seed "$1" "$2"
}

bench_scenarios() {
  local defaults=$1
  shift
  duration=${1:-10}
  conns=${2:-256}
  shift $(($# < 2 ? $# : 2))
  kinds=("$@")
  [ ${#kinds[@]} -gt 0 ] || read -ra kinds <<<"$defaults"
  bench_wrk_server "${BENCH_CHATS:-1000}" "${BENCH_SEED_MESSAGES:-1000}"
}
