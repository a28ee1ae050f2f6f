#!/bin/sh
# Run by the nginx image's entrypoint (mounted into /docker-entrypoint.d/ by
# docker-compose.yml) before nginx starts: writes deploy/nginx.conf, mounted at
# /etc/nginx/chatsys/nginx.conf, to /etc/nginx/nginx.conf with its `resolver 127.0.0.11`
# (Docker's embedded DNS) replaced by the first nameserver of this container's
# /etc/resolv.conf, the engine's own DNS, which knows the `api` replicas: under Docker
# 127.0.0.11 (the file is used unchanged), under podman the network's gateway
# (aardvark-dns). Only the first: podman lists the host's nameservers after its own, and
# nginx asks its resolvers in turn; one of those answers "no such host" for `api`, and
# nginx then drops every replica until the next lookup ("no live upstreams": seen here).
# (So the official image's NGINX_ENTRYPOINT_LOCAL_RESOLVERS, which takes them all, does
# not do under podman.) Written for sh, run or sourced: no exit on success.
set -e
chatsys_src=/etc/nginx/chatsys/nginx.conf
if [ ! -r "$chatsys_src" ]; then
  echo "$0: $chatsys_src is not mounted (docker-compose.yml mounts deploy/nginx.conf there)" >&2
  exit 1
fi
chatsys_resolvers=$(awk '$1 == "nameserver" { if ($2 ~ ":") print "[" $2 "]"; else print $2; exit }' /etc/resolv.conf)
if [ -z "$chatsys_resolvers" ]; then
  echo "$0: no nameserver in /etc/resolv.conf: cannot resolve the api replicas" >&2
  exit 1
fi
sed "s/^\([[:space:]]*resolver[[:space:]]\{1,\}\)127\.0\.0\.11\([[:space:]]\)/\1$chatsys_resolvers\2/" \
  "$chatsys_src" >/etc/nginx/nginx.conf.chatsys
mv /etc/nginx/nginx.conf.chatsys /etc/nginx/nginx.conf
echo "$0: /etc/nginx/nginx.conf from $chatsys_src, resolver $chatsys_resolvers"
