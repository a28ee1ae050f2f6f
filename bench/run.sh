#!/usr/bin/env bash
# Benchmarks one embedded-mode chatsys (release build) with wrk, every scenario in one run
# against the same server, and prints a Markdown table: throughput, p50/p99 latency, and
# each scenario's throughput as a share of the same server's GET /healthz.
#
#   bench/run.sh [DURATION_SECONDS] [CONNECTIONS]        defaults: 10 256
#   BENCH_MODE=distributed bench/run.sh ...   one `chatsys serve` and one `chatsys worker` on
#     this machine's MariaDB, Redis and RabbitMQ (a database, prefix and queue of their own)
#   BENCH_BINARY=path bench/run.sh ...   that binary instead of this checkout's release build
#     (to compare two builds in turns on the same machine)
#
# Needs wrk (apt-get install wrk). Load generator and server share the machine; read the
# ratios, not the absolute numbers, on a shared or small machine.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
conns=${2:-256}
threads=${BENCH_WRK_THREADS:-2}
chats=${BENCH_CHATS:-1000}
seed_messages=${BENCH_SEED_MESSAGES:-1000}
source bench/server.sh
# a fresh server with the data the scenarios use: one application, $chats chats,
# $seed_messages messages in chat 1
bench_wrk_server "$chats" "$seed_messages"

# run KIND [PACE_MS CONNS] -> prints "rps p50_ms p99_ms non2xx"
run() {
  local kind=$1 pace=${2:-} c=${3:-$conns} out
  out=$(BENCH_KIND=$kind PACE_MS=$pace wrk -t"$threads" -c"$c" -d"${duration}s" --latency -s bench/wrk.lua "$base")
  echo "$out" > "$work/wrk-$kind${pace:+-paced}.txt"
  python3 - "$work/wrk-$kind${pace:+-paced}.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(label):
    m = re.search(r"^\s*" + label + r"\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
errs = re.search(r"Socket errors: (.*)", t)
print(f"{rps:.0f} {ms('50%'):.2f} {ms('99%'):.2f} {bad.group(1) if bad else 0}{' ('+errs.group(1)+')' if errs else ''}")
PY
}

echo "benchmark ($mode mode): ${duration}s per scenario, wrk -t$threads -c$conns, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
read -r h_rps h_p50 h_p99 h_bad <<<"$(run healthz)"
row() { printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$(awk -v a="$2" -v b="$h_rps" 'BEGIN{printf "%.0f %%", 100*a/b}')" "$3" "$4" "$5"; }
echo
echo "| scenario | req/s | share of /healthz | p50 ms | p99 ms | non-2xx |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
row "GET /healthz" "$h_rps" "$h_p50" "$h_p99" "$h_bad"
# distributed mode: seconds until the workers have written everything the queue holds
drain() {
  [ "$mode" = distributed ] || { echo 0; return; }
  local start=$(date +%s.%N)
  while [ "$(rabbitmqctl -q list_queues name messages | awk -v q="$name.commands" '$1 == q {print $2}')" != 0 ]; do sleep 0.2; done
  echo "$(date +%s.%N) - $start" | bc
}
notes=()
for kind in create_chat create_message_spread create_message_hot get_message list_messages; do
  read -r rps p50 p99 bad <<<"$(run $kind)"
  row "$kind" "$rps" "$p50" "$p99" "$bad"
  [ "$kind" = create_message_spread ] && peak=$rps
  case "$kind" in create_*)
    d=$(drain)
    [ "$mode" = distributed ] && notes+=("$kind: the workers finished writing ${d}s after the load stopped: $(echo "$rps * $duration / ($duration + $d)" | bc) writes/s sustained")
  esac
done
# paced: each connection waits 1 ms between requests; the number of connections is tuned
# (two tries) so that the offered rate is about half the peak create rate
target=$(awk -v p="$peak" 'BEGIN{print p/2}')
pconns=$(awk -v t="$target" 'BEGIN{c=int(t*2/1000+0.5); if (c<1) c=1; print c}')
read -r rps p50 p99 bad <<<"$(run create_message_spread 1 "$pconns")"
pconns=$(awk -v t="$target" -v r="$rps" -v c="$pconns" 'BEGIN{n=int(c*t/r+0.5); if (n<1) n=1; print n}')
drain >/dev/null
run create_message_spread 1 "$pconns" >"$work/paced.out" &
paced=$!
sleep 2
visibility=$(python3 bench/visibility.py "$base" "$TOKEN" 2 200)
wait $paced
read -r rps p50 p99 bad <"$work/paced.out"
row "create_message_spread, paced to ~half of peak ($pconns conns, 1 ms apart)" "$rps" "$p50" "$p99" "$bad"
echo
echo "server peak RSS (VmHWM) over the run: $(bench_rss_peak_mib) MiB; at the end: $(awk '/RssAnon|RssFile/ {printf "%s %d MiB ", $1, $2/1024}' /proc/$pid/status)"
echo "during the paced run, $visibility"
for note in "${notes[@]}"; do echo "$note"; done
