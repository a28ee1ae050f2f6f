#!/usr/bin/env bash
# Over 300 lines on purpose: one short block per stand-in image, each read on its own.
# Builds local stand-ins, under the exact names docker-compose.yml and the Dockerfile use,
# for the images that cannot be pulled on the CI machines (no registry is reachable there):
#
#   debian:bookworm-slim     debootstrap --variant=minbase bookworm, trimmed like -slim
#   rust:1.95-slim-bookworm  that + gcc, libc6-dev, CA certificates (the workplace's egress
#                            proxy CA too, for cargo) + a copy of the host's Rust toolchain
#   mysql:8.4                MariaDB 10.11 (Debian) + an entrypoint honouring MYSQL_DATABASE,
#                            MYSQL_USER, MYSQL_PASSWORD, MYSQL_ROOT_PASSWORD
#   redis:7                  Redis 7.0 (Debian), protected mode off, runs as redis
#   rabbitmq:3-management    RabbitMQ 3.10 (Debian) + management plugin, honouring
#                            RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS
#   nginx:1.27               nginx >= 1.27.3 from Debian sid (bookworm's 1.22 cannot
#                            `resolve` upstream servers) + the official image's entrypoint
#                            protocol (/docker-entrypoint.d/*.sh and *.envsh)
#
# The base and Rust images are kept while their tags exist (everything else is built on
# them); the others are rebuilt when their recipe changes (a label holds its hash).
# REBUILD=1 rebuilds all of them.
# Needs podman (CONTAINERS_CONF set by .ci/compose.sh) and debootstrap; runs as root.
set -euo pipefail

rebuild=${REBUILD:-0}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d /var/tmp/chatsys-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

log() { printf '[images %s] %s\n' "$(date +%T)" "$*"; }
label=chatsys.standin.recipe
# recipe DIR: a hash of what an image is made of (its folder and the base image's id)
recipe() {
  { podman image inspect --format '{{.Id}}' localhost/debian:bookworm-slim 2>/dev/null || true
    (cd "$1" && find . -type f -not -path './toolchain/*' -print0 | sort -z | xargs -0 sha256sum); } | sha256sum | cut -c1-16
}
# fresh TAG RECIPE: the image exists and was built from the same recipe
fresh() {
  [ "$rebuild" != 1 ] && podman image exists "$1" \
    && [ "$(podman image inspect --format "{{index .Labels \"$label\"}}" "$1" 2>/dev/null)" = "$2" ]
}
# build TAG DIR: podman build of DIR/Containerfile unless fresh, host network (apt, cargo)
build() {
  local started=$SECONDS hash
  hash=$(recipe "$2")
  if fresh "$1" "$hash"; then return 0; fi
  nice -n 10 podman build --pull=never --network host --layers -q --label "$label=$hash" \
    -t "$1" -f "$2/Containerfile" "$2" >/dev/null
  log "$1 built in $(( SECONDS - started ))s ($(podman image inspect --format '{{.Size}}' "$1" | awk '{printf "%d MB", $1/1e6}'))"
}

# ---------------------------------------------------------------- debian:bookworm-slim
# Kept while the tag exists (REBUILD=1 to refresh): every image here and the project's
# own are built on it, and a new one costs a cold build of the project image.
if [ "$rebuild" = 1 ] || ! podman image exists localhost/debian:bookworm-slim; then
  log "debian:bookworm-slim: debootstrap"
  started=$SECONDS
  rootfs="$work/rootfs"
  nice -n 10 debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log"; exit 1; }
  # what the official -slim variant leaves out, now and for every later apt-get install
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,info,groff,lintian,linda}/* "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  : >"$rootfs/etc/hostname"; : >"$rootfs/etc/resolv.conf"
  tar -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' - localhost/debian:bookworm-slim >/dev/null 2>&1
  rm -rf "$rootfs"
  log "debian:bookworm-slim imported in $(( SECONDS - started ))s"
fi

# ---------------------------------------------------------------- rust:1.95-slim-bookworm
# Kept while the tag exists with the host's toolchain version (the project image's build
# stage is built on it: a new one means a cold build of the project image).
toolchain=${RUST_TOOLCHAIN_DIR:-$HOME/.rustup/toolchains/stable-x86_64-unknown-linux-gnu}
version=$("$toolchain/bin/rustc" --version | awk '{print $2}')
rust_env=$(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' localhost/rust:1.95-slim-bookworm 2>/dev/null || true)
if [ "$rebuild" = 1 ] || ! grep -qx "RUST_VERSION=$version" <<<"$rust_env"; then
  case "$version" in 1.95.*) ;; *) log "warning: the host's toolchain is $version, tagged rust:1.95 all the same" ;; esac
  d="$work/rust"; mkdir -p "$d/toolchain" "$d/ca"
  # hard links where the toolchain is on the same file system (no 600 MB copy); no share/
  for part in bin etc lib libexec; do
    cp -al "$toolchain/$part" "$d/toolchain/" 2>/dev/null || cp -a "$toolchain/$part" "$d/toolchain/"
  done
  cp /usr/local/share/ca-certificates/*.crt "$d/ca/" 2>/dev/null || true
  cat >"$d/Containerfile" <<EOF
FROM localhost/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
    && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY toolchain/ /usr/local/rustup/toolchains/$version-x86_64-unknown-linux-gnu/
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$version
RUN mkdir -p /usr/local/cargo/bin \\
    && for tool in /usr/local/rustup/toolchains/$version-x86_64-unknown-linux-gnu/bin/*; do \\
         ln -s "\$tool" /usr/local/cargo/bin/; done \\
    && cargo --version && rustc --version
EOF
  rebuild=1 build localhost/rust:1.95-slim-bookworm "$d"
  rm -rf "$d"
fi

# ---------------------------------------------------------------- mysql:8.4 (MariaDB)
{
  d="$work/mysql"; mkdir -p "$d"
  cat >"$d/Containerfile" <<'EOF'
FROM localhost/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends mariadb-server mariadb-client \
    && rm -rf /var/lib/apt/lists/* /var/lib/mysql \
    && mkdir -p /var/lib/mysql /run/mysqld && chown mysql:mysql /var/lib/mysql /run/mysqld \
    && printf '[mysqld]\nbind-address = 0.0.0.0\nskip-name-resolve\n' >/etc/mysql/mariadb.conf.d/99-container.cnf \
    && ln /usr/sbin/mariadbd /usr/local/sbin/mysqld
COPY docker-entrypoint.sh /usr/local/bin/
VOLUME /var/lib/mysql
EXPOSE 3306
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["mysqld"]
EOF
  cat >"$d/docker-entrypoint.sh" <<'EOF'
#!/bin/bash
# mysql:8.4 stand-in: MariaDB, first start initialised from MYSQL_* like the official image.
set -euo pipefail
# The server runs as /usr/local/sbin/mysqld, a hard link to mariadbd, a path the host does
# not have: the host's `start-stop-daemon --stop --exec /usr/sbin/mariadbd` (the project's
# fault tests) stats the executable path of every process, container or not, on the host,
# and so stopped this server when it ran as /usr/sbin/mariadbd or /usr/sbin/mysqld (a
# symlink to mariadbd on the host); `pidof mariadbd` does not see it either.
if [ "${1:0:1}" = - ]; then set -- mysqld "$@"; fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then exec "$@"; fi
shift
set -- /usr/local/sbin/mysqld --user=mysql "$@"
datadir=/var/lib/mysql
chown mysql:mysql "$datadir" /run/mysqld
if [ ! -d "$datadir/mysql" ]; then
  if [ -z "${MYSQL_ROOT_PASSWORD:-}" ] && [ -z "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" ]; then
    echo "entrypoint: set MYSQL_ROOT_PASSWORD (or MYSQL_ALLOW_EMPTY_PASSWORD)" >&2; exit 1
  fi
  q() { printf '%s' "${1//\'/\'\'}"; }   # a string inside single quotes in SQL
  echo "entrypoint: initialising $datadir"
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
    --auth-root-authentication-method=normal >/dev/null
  "$@" --skip-networking --socket=/run/mysqld/init.sock &
  pid=$!
  for _ in $(seq 1 120); do
    mariadb --socket=/run/mysqld/init.sock -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.5
  done
  {
    echo "DELETE FROM mysql.global_priv WHERE User = '';"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$(q "${MYSQL_ROOT_PASSWORD:-}")';"
    echo "CREATE USER 'root'@'%' IDENTIFIED BY '$(q "${MYSQL_ROOT_PASSWORD:-}")';"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [ -n "${MYSQL_DATABASE:-}" ]; then
      echo "CREATE DATABASE IF NOT EXISTS \`${MYSQL_DATABASE}\`;"
    fi
    if [ -n "${MYSQL_USER:-}" ]; then
      echo "CREATE USER '$(q "$MYSQL_USER")'@'%' IDENTIFIED BY '$(q "${MYSQL_PASSWORD:-}")';"
      [ -z "${MYSQL_DATABASE:-}" ] || echo "GRANT ALL ON \`${MYSQL_DATABASE}\`.* TO '$(q "$MYSQL_USER")'@'%';"
    fi
    echo "FLUSH PRIVILEGES;"
  } | mariadb --socket=/run/mysqld/init.sock -uroot
  kill "$pid"; wait "$pid" || true
  echo "entrypoint: initialised"
fi
exec "$@"
EOF
  chmod +x "$d/docker-entrypoint.sh"
  build localhost/mysql:8.4 "$d"
}

# ---------------------------------------------------------------- redis:7
{
  d="$work/redis"; mkdir -p "$d"
  cat >"$d/Containerfile" <<'EOF'
FROM localhost/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* && mkdir /data && chown redis:redis /data
COPY docker-entrypoint.sh /usr/local/bin/
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
EOF
  cat >"$d/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# redis:7 stand-in: protected mode off (the official image compiles it off), runs as redis.
set -e
case "$1" in -*|*.conf) set -- redis-server "$@" ;; esac
if [ "$1" = redis-server ]; then
  set -- "$@" --protected-mode no
  if [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis:redis {} +
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
  fi
fi
exec "$@"
EOF
  chmod +x "$d/docker-entrypoint.sh"
  build localhost/redis:7 "$d"
}

# ---------------------------------------------------------------- rabbitmq:3-management
{
  d="$work/rabbitmq"; mkdir -p "$d"
  cat >"$d/Containerfile" <<'EOF'
FROM localhost/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends rabbitmq-server \
    && rm -rf /var/lib/apt/lists/* /var/lib/rabbitmq/mnesia /var/log/rabbitmq/* \
    && echo '[rabbitmq_management,rabbitmq_prometheus].' >/etc/rabbitmq/enabled_plugins
COPY docker-entrypoint.sh /usr/local/bin/
VOLUME /var/lib/rabbitmq
EXPOSE 5672 15672
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["rabbitmq-server"]
EOF
  cat >"$d/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# rabbitmq:3-management stand-in: the official image's defaults, logs to the console.
set -e
if [ "$1" = rabbitmq-server ]; then
  cat >/etc/rabbitmq/rabbitmq.conf <<CONF
loopback_users = none
listeners.tcp.default = 5672
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
management.tcp.port = 15672
log.console = true
log.console.level = info
log.file = false
CONF
  chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
fi
exec "$@"
EOF
  chmod +x "$d/docker-entrypoint.sh"
  build localhost/rabbitmq:3-management "$d"
}

# ---------------------------------------------------------------- nginx:1.27
{
  d="$work/nginx"; mkdir -p "$d"
  cat >"$d/Containerfile" <<EOF
FROM localhost/debian:bookworm-slim
# sid's Release file is past its Valid-Until date: accept it, for this one install
RUN echo 'deb $mirror sid main' >/etc/apt/sources.list.d/sid.list \\
    && apt-get -o Acquire::Check-Valid-Until=false update \\
    && apt-get install -y --no-install-recommends curl ca-certificates \\
    && apt-get install -y --no-install-recommends -t sid nginx \\
    && rm -f /etc/apt/sources.list.d/sid.list && rm -rf /var/lib/apt/lists/* \\
    && nginx -v 2>&1 | awk -F/ '{ split(\$2, v, "."); exit !(v[1] > 1 || (v[1] == 1 && (v[2] > 27 || (v[2] == 27 && v[3] >= 3)))) }' \\
    && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log \\
    && rm -f /etc/nginx/sites-enabled/* && mkdir -p /docker-entrypoint.d
COPY docker-entrypoint.sh /
COPY 15-local-resolvers.envsh /docker-entrypoint.d/
EXPOSE 80
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["nginx", "-g", "daemon off;"]
EOF
  # the official image's entrypoint protocol: *.envsh sourced, *.sh run, in version order
  cat >"$d/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# nginx:1.27 stand-in entrypoint, the official image's protocol.
set -e
if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
  find /docker-entrypoint.d/ -follow -type f -print | sort -V | while read -r f; do
    case "$f" in
      *.envsh) if [ -x "$f" ]; then echo "$0: Sourcing $f"; . "$f"; else echo "$0: Ignoring $f, not executable"; fi ;;
      *.sh) if [ -x "$f" ]; then echo "$0: Launching $f"; "$f"; else echo "$0: Ignoring $f, not executable"; fi ;;
      *) echo "$0: Ignoring $f" ;;
    esac
  done
  echo "$0: Configuration complete; ready for start up"
fi
exec "$@"
EOF
  cat >"$d/15-local-resolvers.envsh" <<'EOF'
#!/bin/sh
# as the official image: NGINX_ENTRYPOINT_LOCAL_RESOLVERS=1 exports NGINX_LOCAL_RESOLVERS
[ "${NGINX_ENTRYPOINT_LOCAL_RESOLVERS:-}" ] || return 0
NGINX_LOCAL_RESOLVERS=$(awk 'BEGIN{ORS=" "} $1=="nameserver" {if ($2 ~ ":") {print "["$2"]"} else {print $2}}' /etc/resolv.conf)
NGINX_LOCAL_RESOLVERS="${NGINX_LOCAL_RESOLVERS% }"
export NGINX_LOCAL_RESOLVERS
EOF
  chmod +x "$d/docker-entrypoint.sh" "$d/15-local-resolvers.envsh"
  build localhost/nginx:1.27 "$d"
}

log "stand-in images ready"
