#!/usr/bin/env bash
# Where a request's CPU goes: one embedded-mode chatsys (release build), one application with
# $BENCH_CHATS chats (1,000) and $BENCH_SEED_MESSAGES messages in chat 1 (1,000), then each
# scenario of bench/wrk.lua for DURATION seconds with wrk; prints the server's CPU time per
# request, split by thread (tokio-rt-worker: HTTP and handlers; sqlite-writer: batches;
# sqlite-checkpoi: the WAL checkpoints; the search indexer and tantivy's threads;
# ended_threads: threads that ended during the run, tantivy's indexing thread above all, which
# it starts anew at every commit).
#
#   bench/cpu.sh [DURATION_SECONDS] [CONNECTIONS] [KIND...]
#     defaults: 10 256 healthz create_chat create_message_spread create_message_hot
#   BENCH_BINARY=path bench/cpu.sh ...   that binary instead of this checkout's release build
#
# The counts come from /proc (utime + stime of every thread), not from a profiler, so the
# server runs at full speed. Per-request CPU of two builds, or of a scenario against
# /healthz, is the comparison to make on a shared machine; absolute rates move with it.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/server.sh
bench_scenarios "healthz create_chat create_message_spread create_message_hot" "$@"

# one line per thread: tid, name (digits dropped), CPU ticks so far
threads() {
  for t in /proc/"$pid"/task/*; do
    sed -E 's/^([0-9]+) \((.*)\) (.*)$/\1\t\2\t\3/' "$t/stat" 2>/dev/null || true
  done | awk -F'\t' '{split($3, f, " "); name = $2; sub(/[0-9#]+$/, "", name); gsub(/ /, "_", name); print $1, name, f[12] + f[13]}'
}
# the whole process's CPU ticks so far, threads that have ended included (tantivy starts its
# indexing thread anew at every commit: its time is only here)
process() {
  sed -E 's/^.*\) //' /proc/"$pid"/stat | awk '{print "process", "process", $12 + $13}'
}

echo "server CPU per request ($mode mode), ${duration}s per scenario, wrk -c$conns, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| scenario | req/s | server cores | µs per request | by thread (µs) |"
echo "| --- | ---: | ---: | ---: | --- |"
for kind in "${kinds[@]}"; do
  { threads; process; } >"$work/before"
  rps=$(BENCH_KIND=$kind wrk -t2 -c"$conns" -d"${duration}s" -s bench/wrk.lua "$base" | awk '/Requests\/sec/ {print $2}')
  { threads; process; } >"$work/after"
  awk -v kind="$kind" -v rps="$rps" -v secs="$duration" -v hz="$(getconf CLK_TCK)" '
    FNR == NR { before[$1] = $3; next }
    $1 == "process" { total = $3 - before[$1]; next }
    { used[$2] += $3 - before[$1]; live += $3 - before[$1] }
    END {
      # threads that ended during the run (tantivy-index: a new one per commit)
      used["ended_threads"] = total - live
      requests = rps * secs
      line = ""
      for (name in used) {
        us = 1e6 * used[name] / hz / requests
        if (us >= 0.05) line = line sprintf("%s %.1f, ", name, us)
      }
      printf "| %s | %.0f | %.2f | %.1f | %s |\n", kind, rps, total / hz / secs, 1e6 * total / hz / requests, substr(line, 1, length(line) - 2)
    }' "$work/before" "$work/after"
done
