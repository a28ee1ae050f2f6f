#!/usr/bin/env bash
# Runs ../shared/acceptance/contract.py against a freshly started chatsys and fails on any
# check that fails, except the ones listed in .ci/contract-known-failures (the checks of
# features that are not built yet, each named exactly; the list shrinks to nothing).
# Usage: .ci/contract.sh MODE    (MODE: embedded)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-embedded}
bin=${CHATSYS_BIN:-target/debug/chatsys}
contract=${CONTRACT_PY:-../shared/acceptance/contract.py}
work=$(mktemp -d)
log="$work/server.log"
pid=

cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$bin" ] || cargo build --locked
case "$mode" in
  embedded) CHATSYS_LISTEN=127.0.0.1:0 CHATSYS_DATA_DIR="$work/data" "$bin" serve >"$log" 2>&1 & pid=$! ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac

addr=
for _ in $(seq 1 300); do
  addr=$(grep -ao 'listening addr=[0-9.:]*' "$log" | head -n1 | cut -d= -f2 || true)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "chatsys exited before listening" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { cat "$log"; echo "chatsys did not log its address" >&2; exit 1; }
echo "chatsys ($mode) listening on $addr"

set +e
python3 "$contract" "http://$addr" | tee "$work/contract.out"
set -e
tail -n1 "$work/contract.out"

known=.ci/contract-known-failures
unexpected=$(grep '^FAIL ' "$work/contract.out" | sed -e 's/^FAIL //' -e 's/  -- .*$//' \
  | grep -vxF -f <(grep -v '^#' "$known" | sed '/^$/d') || true)
if [ -n "$unexpected" ]; then
  echo "contract checks that failed and are not known to be missing:" >&2
  echo "$unexpected" >&2
  exit 1
fi
ran=$(grep -c '^\(ok\|FAIL\) ' "$work/contract.out")
[ "$ran" -gt 50 ] || { echo "the contract ran only $ran checks" >&2; exit 1; }

# SIGTERM: the server finishes what is in flight and exits 0
kill -TERM "$pid"
wait "$pid"
status=$?
pid=
[ "$status" -eq 0 ] || { cat "$log"; echo "chatsys exited with $status after SIGTERM" >&2; exit 1; }
echo "contract ($mode): no unexpected failures; clean exit on SIGTERM"
