#!/usr/bin/env bash
# Memory under a sustained load: one embedded-mode chatsys (release build), one scenario of
# bench/wrk.lua for much longer than bench/run.sh's 10 s, so that the search index grows
# segments large enough for Tantivy's bigger merges. Every 2 s: the server's peak and
# current resident memory (anonymous and file pages, MiB) and the document counts of the
# index's segments; at the end the rate and the peak over the whole run.
#
#   bench/sustained.sh [SECONDS] [CONNECTIONS] [KIND]   defaults: 120 256 create_message_hot
#   BENCH_BINARY=path bench/sustained.sh ...   that binary instead of this checkout's build
#
# At ~25k hot creates a second, 120 s make about 3 million messages.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}
conns=${2:-256}
kind=${3:-create_message_hot}
source bench/server.sh
bench_wrk_server "${BENCH_CHATS:-1000}" "${BENCH_SEED_MESSAGES:-1000}"

echo "sustained $kind: ${seconds}s, wrk -t2 -c$conns, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
BENCH_KIND=$kind wrk -t2 -c"$conns" -d"${seconds}s" -s bench/wrk.lua "$base" >"$work/wrk.txt" &
load=$!
echo
echo "| s | peak RSS | RSS | anonymous | file | segments (documents, largest first) |"
echo "| ---: | ---: | ---: | ---: | ---: | --- |"
t=0
while kill -0 "$load" 2>/dev/null; do
  sleep 2
  t=$((t + 2))
  read -r hwm rss anon file < <(awk '/VmHWM|VmRSS|RssAnon|RssFile/ {printf "%d ", $2 / 1024} END {print ""}' /proc/"$pid"/status)
  segments=$(python3 -c '
import json, sys
try:
    meta = json.load(open(sys.argv[1]))
    print(" ".join(str(s["max_doc"]) for s in sorted(meta["segments"], key=lambda s: -s["max_doc"])))
except (OSError, ValueError):
    print("?")' "$work/data/search/meta.json")
  echo "| $t | $hwm | $rss | $anon | $file | $segments |"
done
wait "$load"
echo
grep -E 'Requests/sec|Non-2xx' "$work/wrk.txt" || true
echo "server peak RSS (VmHWM) over the run: $(bench_rss_peak_mib) MiB"
