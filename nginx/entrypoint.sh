#!/bin/sh
# Render the configuration into a writable place (the root filesystem may be read-only), test
# it, then run nginx in the foreground.
set -eu
: "${NGINX_RUN_DIR:=/tmp/nginx}"
export NGINX_RUN_DIR
mkdir -p "$NGINX_RUN_DIR"
postwire-render-config > "$NGINX_RUN_DIR/nginx.conf"
nginx -e stderr -t -q -c "$NGINX_RUN_DIR/nginx.conf"
exec nginx -e stderr -c "$NGINX_RUN_DIR/nginx.conf" -g 'daemon off;'
