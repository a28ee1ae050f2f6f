#!/usr/bin/env bash
# Fuzzes every operation of /openapi.json of a fresh embedded chatsys with Schemathesis
# (all of its default checks; settings in .ci/schemathesis.toml, hooks in
# .ci/schemathesis_hooks.py). Fails on any failure.
# Usage: .ci/schemathesis.sh          SCHEMATHESIS_SEED=random for a new seed
set -euo pipefail
cd "$(dirname "$0")/.."
version=4.32.5
bin=${CHATSYS_BIN:-target/debug/chatsys}
seed=${SCHEMATHESIS_SEED:-20261127}
if ! st --version 2>/dev/null | grep -q "$version"; then
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$version"
fi
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
[ -x "$bin" ] || cargo build --locked
CHATSYS_LISTEN=127.0.0.1:0 CHATSYS_DATA_DIR="$work/data" RUST_LOG=warn,chatsys::wiring=info "$bin" serve >"$work/log" 2>&1 &
pid=$!
addr=
for _ in $(seq 1 300); do
  addr=$(grep -ao 'listening addr=[0-9.:]*' "$work/log" | head -n1 | cut -d= -f2 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/log"; exit 1; }
seed_args=()
[ "$seed" = random ] || seed_args=(--seed "$seed")
# from the temporary folder: Schemathesis keeps its cache (.schemathesis/) where it runs
cp .ci/schemathesis.toml .ci/schemathesis_hooks.py "$work/"
cd "$work"
# the events stream never ends by design (tests/events.rs and the contract suite cover it)
SCHEMATHESIS_HOOKS=schemathesis_hooks st --config-file schemathesis.toml run "http://$addr/openapi.json" \
  --exclude-operation-id chat_events "${seed_args[@]}"
