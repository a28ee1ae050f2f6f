#!/usr/bin/env bash
# Where a request waits rather than computes: one embedded-mode chatsys (release build), the
# data of bench/cpu.sh, then each scenario of bench/wrk.lua for DURATION seconds with wrk;
# prints, per scenario, how idle the whole machine was, the create pipeline's batches, and
# per thread: the share of the time it ran, the share it waited for a core, and the bytes it
# wrote to files per request (the SQLite writer's WAL, the checkpoints' database pages).
#
#   bench/waits.sh [DURATION_SECONDS] [CONNECTIONS] [KIND...]
#     defaults: 10 256 healthz create_message_spread create_message_hot
#   BENCH_BINARY=path bench/waits.sh ...   that binary instead of this checkout's release build
#
# From /proc (stat, schedstat, io of every thread) and the server's /metrics: the server
# runs at full speed. Idle time while the server is loaded means something waits for the
# disk or for another thread; a thread's wait for a core is time it was ready to run.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/server.sh
bench_scenarios "healthz create_message_spread create_message_hot" "$@"

# one line per thread name (digits dropped): ns run, ns waiting for a core, bytes written
threads() {
  for t in /proc/"$pid"/task/*; do
    {
      name=$(tr -d '0-9#' <"$t/comm" | tr ' ' _)
      echo "$name $(cut -d' ' -f1,2 "$t/schedstat") $(awk '/^write_bytes/ {print $2}' "$t/io")"
    } 2>/dev/null || true
  done | awk '{r[$1] += $2; w[$1] += $3; b[$1] += $4} END {for (n in r) print n, r[n], w[n], b[n]}'
  # the whole process's bytes written, threads that have ended included (tantivy's indexing
  # thread, a new one per commit, writes the segments)
  echo "process 0 0 $(awk '/^write_bytes/ {print $2}' /proc/"$pid"/io)"
}
# busy and idle ticks of the whole machine (iowait counts as idle)
machine() { awk '/^cpu / {print "machine", $2 + $3 + $4 + $7 + $8, $5 + $6, 0}' /proc/stat; }
# batches written, commands in them, seconds spent writing them
batches() {
  curl -sf "$base/metrics" | awk '
    /^chatsys_batch_commands_count/ {n = $2} /^chatsys_batch_commands_sum/ {c = $2}
    /^chatsys_batch_write_seconds_sum/ {s = $2}
    END {print "batches", n + 0, c + 0, s + 0}'
}

echo "where requests wait ($mode mode), ${duration}s per scenario, wrk -c$conns, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| scenario | req/s | machine idle | batches: creates each, ms each, time writing | by thread: run %, waiting for a core %, bytes written to files per request |"
echo "| --- | ---: | ---: | --- | --- |"
for kind in "${kinds[@]}"; do
  { threads; machine; batches; } >"$work/before"
  rps=$(BENCH_KIND=$kind wrk -t2 -c"$conns" -d"${duration}s" -s bench/wrk.lua "$base" | awk '/Requests\/sec/ {print $2}')
  { threads; machine; batches; } >"$work/after"
  awk -v kind="$kind" -v rps="$rps" -v secs="$duration" '
    FNR == NR { r[$1] = $2; w[$1] = $3; b[$1] = $4; next }
    $1 == "machine" { idle = ($3 - w[$1]) / ($2 - r[$1] + $3 - w[$1]); next }
    $1 == "batches" {
      n = $2 - r[$1]
      if (n > 0) batch = sprintf("%.0f, %.2f, %.0f %%", ($3 - w[$1]) / n, 1000 * ($4 - b[$1]) / n, 100 * ($4 - b[$1]) / secs)
      else batch = "none"
      next
    }
    $1 == "process" { written = ($4 - b[$1]) / (rps * secs); next }
    {
      run = ($2 - r[$1]) / 1e9 / secs; wait = ($3 - w[$1]) / 1e9 / secs
      if (run >= 0.01) line = line sprintf("%s %.0f, %.0f, %.0f; ", $1, 100 * run, 100 * wait, ($4 - b[$1]) / (rps * secs))
    }
    END { printf "| %s | %.0f | %.0f %% | %s | %s; all threads: %.0f bytes |\n", kind, rps, 100 * idle, batch, substr(line, 1, length(line) - 2), written }' \
    "$work/before" "$work/after"
done
