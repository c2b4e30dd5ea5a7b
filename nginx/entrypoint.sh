#!/bin/sh
# Render the configuration into a writable place (the root filesystem may be read-only), test
# it, then run nginx in the foreground.
#
# POSTWIRE_NGINX_REFRESH_SECONDS (0: off). With static upstreams naming a headless Service (one
# DNS record per ready pod), nginx resolves the names once, at start, and balances least_conn
# over every pod it found. Every this many seconds the names are looked up again and, when the
# set of addresses changed (a pod added, replaced or gone), nginx reloads: new connections then
# include the new pods, established ones stay on the old workers until they close. A reload
# starts the connection counts afresh (the old workers' sockets are not counted), so after a
# scale-out new sockets spread evenly over old and new pods rather than filling the new one
# first. (nginx >= 1.27.3 re-resolves upstream names itself, `server ... resolve`, keeping the
# counts; the Debian nginx this project builds its stand-in image from is 1.22.)
set -eu
: "${NGINX_RUN_DIR:=/tmp/nginx}"
: "${POSTWIRE_NGINX_REFRESH_SECONDS:=0}"
export NGINX_RUN_DIR
mkdir -p "$NGINX_RUN_DIR"
conf="$NGINX_RUN_DIR/nginx.conf"
postwire-render-config > "$conf"

if [ "$POSTWIRE_NGINX_REFRESH_SECONDS" = 0 ]; then
  nginx -e stderr -t -q -c "$conf"
  exec nginx -e stderr -c "$conf" -g 'daemon off;'
fi

# The addresses the upstream names resolve to, one per line, sorted (empty if none resolves).
addresses() {
  for server in ${POSTWIRE_API_SERVERS:-api:8000} ${POSTWIRE_WS_SERVERS:-ws:8001}; do
    getent ahostsv4 "${server%:*}" | awk '{print $1}'
  done | sort -u
}

# nginx refuses to start with a name that does not resolve: wait for the backends' first pods.
waited=0
until nginx -e stderr -t -q -c "$conf" 2>/dev/null; do
  if [ "$waited" -ge 120 ]; then nginx -e stderr -t -q -c "$conf"; exit 1; fi
  echo "postwire-nginx: waiting for the upstream names to resolve" >&2
  sleep 2; waited=$((waited + 2))
done
known=$(addresses)
nginx -e stderr -c "$conf" -g 'daemon off;' &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
trap 'kill -QUIT "$pid" 2>/dev/null' QUIT
(
  while sleep "$POSTWIRE_NGINX_REFRESH_SECONDS"; do
    now=$(addresses)
    if [ -n "$now" ] && [ "$now" != "$known" ]; then
      echo "postwire-nginx: upstream addresses changed ($(echo $known) -> $(echo $now)); reloading" >&2
      nginx -e stderr -c "$conf" -s reload && known=$now
    fi
  done
) &
refresher=$!
# `wait` returns early when a trapped signal arrives: wait again until nginx has exited.
status=0
while kill -0 "$pid" 2>/dev/null; do wait "$pid" || status=$?; done
kill "$refresher" 2>/dev/null || true
exit "$status"
